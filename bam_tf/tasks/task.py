"""Task specifications: what a task's files look like and how it is scored.

A task is data, not a class hierarchy: GLUE tasks and a user's own tasks are
both `TaskSpec` values, so adding a task never means writing a reader.
"""

import dataclasses
from typing import Dict, Optional, Tuple, Union

CLASSIFICATION = "classification"
REGRESSION = "regression"

# The metrics bam_tf computes (evaluation.metrics) per task kind, and those a
# task reports when it declares none. "f1" is binary: two labels only.
METRICS = {CLASSIFICATION: ("accuracy", "f1", "macro_f1", "mcc"),
           REGRESSION: ("pearson", "spearman")}
DEFAULT_METRICS = {CLASSIFICATION: ("accuracy",),
                   REGRESSION: ("pearson", "spearman")}


@dataclasses.dataclass(frozen=True)
class SplitLayout:
  """Where one split lives and which columns hold its fields.

  Columns are 0-based ints (negative counts from the end) or header names
  (strings; the file must then have a header). `label_col=None` means the
  split is unlabelled (test) and examples get a dummy label. `quotechar`
  None reads the file as the original does (no quoting: GLUE text has stray
  quotes); a character reads it as RFC 4180 CSV with that quote (a quoted
  field may hold the delimiter, line breaks and doubled quotes).
  """
  file: str
  text_a_col: Union[int, str]
  text_b_col: Optional[Union[int, str]] = None
  label_col: Optional[Union[int, str]] = None
  has_header: bool = True
  delimiter: str = "\t"
  quotechar: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One task: name, folder, splits, label space and metric."""
  name: str                      # canonical name, e.g. "sts"
  dir_name: str                  # folder under data_dir, e.g. "STS-B"
  kind: str                      # CLASSIFICATION or REGRESSION
  splits: Dict[str, SplitLayout]
  label_list: Tuple[str, ...] = ()
  # Regression targets are scaled (y - min) / max as the original does.
  label_range: Tuple[float, float] = (0.0, 5.0)
  double_unordered: bool = False   # add (b, a) copies to train
  metric: str = "accuracy"       # the headline metric ("score")
  # Every metric reported besides the headline one (empty: DEFAULT_METRICS).
  metrics: Tuple[str, ...] = ()
  # Binary F1's positive class (None: the second label).
  positive_label: Optional[str] = None
  glue_name: str = ""            # GLUE spelling, e.g. "STS-B"
  dev_split: str = "dev"         # the split reported as "dev"
  in_average: bool = True        # WNLI is left out of the paper's average
  official_counts: Dict[str, int] = dataclasses.field(default_factory=dict)

  @property
  def is_regression(self) -> bool:
    return self.kind == REGRESSION

  @property
  def num_labels(self) -> int:
    return 1 if self.is_regression else len(self.label_list)

  @property
  def reported_metrics(self) -> Tuple[str, ...]:
    """The metrics evaluation writes, in order; the headline one included.
    A regression task always reports both correlations."""
    if self.is_regression:
      names = list(DEFAULT_METRICS[REGRESSION])
    else:
      names = list(self.metrics or DEFAULT_METRICS[CLASSIFICATION])
    if self.metric not in names:
      names.append(self.metric)
    return tuple(names)

  @property
  def positive_index(self) -> int:
    """Label index of binary F1's positive class."""
    if self.positive_label is None:
      return 1
    return self.label_list.index(self.positive_label)

  def scale_label(self, value: float) -> float:
    """Original scaling of regression targets: (y - min) / max."""
    lo, hi = self.label_range
    return (value - lo) / hi

  def unscale(self, value):
    lo, hi = self.label_range
    return value * hi + lo

  def get_config(self) -> Dict:
    """JSON-able fields (a model's get_config carries its tasks)."""
    return dataclasses.asdict(self)

  @classmethod
  def from_config(cls, config: Dict) -> "TaskSpec":
    values = dict(config)
    values["splits"] = {name: SplitLayout(**layout)
                        for name, layout in values["splits"].items()}
    values["label_list"] = tuple(values.get("label_list", ()))
    values["label_range"] = tuple(values.get("label_range", (0.0, 5.0)))
    values["metrics"] = tuple(values.get("metrics", ()))
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class Example:
  """One row of a task file.

  `eid` is the row index within the file after the header; swapped copies
  made by `double_unordered` get `eid + number_of_rows`. `label` is the label
  string (classification) or the unscaled float (regression); unlabelled
  splits carry the dummy label (first label, or 0.0).
  """
  eid: int
  task_name: str
  text_a: str
  text_b: Optional[str]
  label: Union[str, float]
