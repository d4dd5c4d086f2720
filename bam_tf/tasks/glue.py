"""The nine GLUE tasks, laid out exactly as the original BAM code reads them.

Column positions are 0-based, negative counts from the end. Official row
counts are those of the public GLUE release (rows after the header); the
data inspector prints them beside what it finds.
"""

from bam_tf.tasks.task import (CLASSIFICATION, REGRESSION, SplitLayout,
                               TaskSpec)

_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")


def _pair(file, a, b, label=None, header=True):
  return SplitLayout(file=file, text_a_col=a, text_b_col=b, label_col=label,
                     has_header=header)


def _single(file, a, label=None, header=True):
  return SplitLayout(file=file, text_a_col=a, label_col=label,
                     has_header=header)


GLUE_TASKS = {
    "cola": TaskSpec(
        name="cola", dir_name="CoLA", glue_name="CoLA", kind=CLASSIFICATION,
        label_list=_BINARY, metric="mcc", metrics=("accuracy", "mcc"),
        splits={"train": _single("train.tsv", 3, 1, header=False),
                "dev": _single("dev.tsv", 3, 1, header=False),
                "test": _single("test.tsv", 1)},
        official_counts={"train": 8551, "dev": 1043, "test": 1063}),
    "sst": TaskSpec(
        name="sst", dir_name="SST-2", glue_name="SST-2", kind=CLASSIFICATION,
        label_list=_BINARY, metric="accuracy",
        splits={"train": _single("train.tsv", 0, 1),
                "dev": _single("dev.tsv", 0, 1),
                "test": _single("test.tsv", 1)},
        official_counts={"train": 67349, "dev": 872, "test": 1821}),
    "mrpc": TaskSpec(
        name="mrpc", dir_name="MRPC", glue_name="MRPC", kind=CLASSIFICATION,
        label_list=_BINARY, metric="accuracy", metrics=("accuracy", "f1"),
        double_unordered=True,
        splits={"train": _pair("train.tsv", 3, 4, 0),
                "dev": _pair("dev.tsv", 3, 4, 0),
                "test": _pair("test.tsv", 3, 4)},
        official_counts={"train": 3668, "dev": 408, "test": 1725}),
    "sts": TaskSpec(
        name="sts", dir_name="STS-B", glue_name="STS-B", kind=REGRESSION,
        label_range=(0.0, 5.0), metric="spearman", double_unordered=True,
        splits={"train": _pair("train.tsv", -3, -2, -1),
                "dev": _pair("dev.tsv", -3, -2, -1),
                "test": _pair("test.tsv", -2, -1)},
        official_counts={"train": 5749, "dev": 1500, "test": 1379}),
    "qqp": TaskSpec(
        name="qqp", dir_name="QQP", glue_name="QQP", kind=CLASSIFICATION,
        label_list=_BINARY, metric="accuracy", metrics=("accuracy", "f1"),
        splits={"train": _pair("train.tsv", 3, 4, 5),
                "dev": _pair("dev.tsv", 3, 4, 5),
                "test": _pair("test.tsv", 1, 2)},
        official_counts={"train": 363846, "dev": 40430, "test": 390965}),
    "mnli": TaskSpec(
        name="mnli", dir_name="MNLI", glue_name="MNLI", kind=CLASSIFICATION,
        label_list=("contradiction", "entailment", "neutral"),
        metric="accuracy", dev_split="dev_matched",
        splits={"train": _pair("train.tsv", 8, 9, -1),
                "dev_matched": _pair("dev_matched.tsv", 8, 9, -1),
                "dev_mismatched": _pair("dev_mismatched.tsv", 8, 9, -1),
                "test_matched": _pair("test_matched.tsv", 8, 9),
                "test_mismatched": _pair("test_mismatched.tsv", 8, 9),
                "diagnostic": _pair("../diagnostic/diagnostic.tsv", 1, 2)},
        official_counts={"train": 392702, "dev_matched": 9815,
                         "dev_mismatched": 9832, "test_matched": 9796,
                         "test_mismatched": 9847, "diagnostic": 1104}),
    "qnli": TaskSpec(
        name="qnli", dir_name="QNLI", glue_name="QNLI", kind=CLASSIFICATION,
        label_list=_NLI2, metric="accuracy",
        splits={"train": _pair("train.tsv", 1, 2, 3),
                "dev": _pair("dev.tsv", 1, 2, 3),
                "test": _pair("test.tsv", 1, 2)},
        official_counts={"train": 104743, "dev": 5463, "test": 5463}),
    "rte": TaskSpec(
        name="rte", dir_name="RTE", glue_name="RTE", kind=CLASSIFICATION,
        label_list=_NLI2, metric="accuracy",
        splits={"train": _pair("train.tsv", 1, 2, 3),
                "dev": _pair("dev.tsv", 1, 2, 3),
                "test": _pair("test.tsv", 1, 2)},
        official_counts={"train": 2490, "dev": 277, "test": 3000}),
    "wnli": TaskSpec(
        name="wnli", dir_name="WNLI", glue_name="WNLI", kind=CLASSIFICATION,
        label_list=_BINARY, metric="accuracy", in_average=False,
        splits={"train": _pair("train.tsv", 1, 2, 3),
                "dev": _pair("dev.tsv", 1, 2, 3),
                "test": _pair("test.tsv", 1, 2)},
        official_counts={"train": 635, "dev": 71, "test": 146}),
}

# GLUE's own score of a task where it is not the headline metric alone: the
# mean of these (the GLUE leaderboard's convention).
GLUE_SCORE_METRICS = {"mrpc": ("accuracy", "f1"), "qqp": ("accuracy", "f1"),
                      "sts": ("pearson", "spearman")}

# GLUE spellings and common variants, lower-cased, mapped to the original's
# task names.
ALIASES = {
    "sst-2": "sst", "sst2": "sst", "sts-b": "sts", "stsb": "sts",
    "mnli-m": "mnli", "mnli_matched": "mnli",
}
for _name, _spec in GLUE_TASKS.items():
  ALIASES[_spec.glue_name.lower()] = _name
