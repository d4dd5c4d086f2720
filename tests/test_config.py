"""Flag -> config resolution: task defaults, explicit flags, validation."""

import dataclasses
import json
import os

import pytest
from absl import flags

from bam_tf import configure


def _config(tmp_path, glue_dir, *args):
  configure.define_flags()
  argv = ["prog", f"--data_dir={glue_dir}", f"--model_dir={tmp_path}"]
  flags.FLAGS.unparse_flags()
  flags.FLAGS(argv + list(args))
  try:
    return configure.config_from_flags()
  finally:
    flags.FLAGS.unparse_flags()


def test_single_task_defaults(tmp_path, glue_dir):
  c = _config(tmp_path, glue_dir, "--task_names=rte")
  assert (c.learning_rate, c.num_train_epochs, c.train_batch_size) == (
      5e-5, 3.0, 32)
  assert len(c.tasks) == 1


def test_multi_task_defaults_and_explicit_wins(tmp_path, glue_dir):
  c = _config(tmp_path, glue_dir, "--task_names=CoLA,MRPC,STS-B,RTE")
  assert c.task_names == ["cola", "mrpc", "sts", "rte"]
  assert (c.learning_rate, c.num_train_epochs, c.train_batch_size) == (
      1e-4, 6.0, 128)
  assert (c.layerwise_lr_decay, c.weight_decay_rate, c.warmup_proportion,
          c.max_seq_length, c.eval_batch_size) == (0.9, 0.01, 0.1, 128, 128)
  c = _config(tmp_path, glue_dir, "--task_names=cola,rte",
              "--learning_rate=3e-5", "--train_batch_size=16")
  assert (c.learning_rate, c.num_train_epochs, c.train_batch_size) == (
      3e-5, 6.0, 16)


def test_flagfile(tmp_path, glue_dir):
  flagfile = tmp_path / "run.cfg"
  flagfile.write_text("--task_names=sts\n--num_train_epochs=2\n")
  c = _config(tmp_path, glue_dir, f"--flagfile={flagfile}")
  assert c.task_names == ["sts"] and c.num_train_epochs == 2.0
  assert c.learning_rate == 5e-5


@pytest.mark.parametrize("arg,message", [
    ("--learning_rate=-1e-4", "--learning_rate: must be > 0"),
    ("--task_names=rte,nope", "--task_names: unknown task 'nope'"),
    ("--layerwise_lr_decay=1.5", "--layerwise_lr_decay: must be in"),
    ("--warmup_proportion=1.2", "--warmup_proportion: must be in"),
    ("--vocab_file=/no/such/vocab.txt", "--vocab_file: '/no/such/vocab.txt'"
     " does not exist"),
    ("--vocab_file=/tmp", "--vocab_file: '/tmp' is a folder, not a file"),
    ("--hub_module_url=/no/such/encoder", "--hub_module_url: "
     "'/no/such/encoder' does not exist"),
])
def test_invalid_values_name_the_flag(tmp_path, glue_dir, arg, message):
  with pytest.raises(configure.ConfigError, match=message):
    _config(tmp_path, glue_dir, arg)
  # --debug trains a tiny random encoder and never loads one: the value is
  # still checked (it was accepted without a word).
  with pytest.raises(configure.ConfigError, match=message):
    _config(tmp_path, glue_dir, arg, "--debug")


def test_trial_lists_name_only_trials_the_run_has(tmp_path, glue_dir):
  # Trials count from 0; a number past --num_trials would be done nothing
  # for, without a word (the stage log's "trial 5" is trial 4 here).
  c = _config(tmp_path, glue_dir, "--num_trials=5", "--retrain_trials=4",
              "--teacher_output_trials=0,4")
  assert (c.retrain_trial_ids, c.teacher_output_trial_ids) == ([4], [0, 4])
  with pytest.raises(configure.ConfigError, match=r"^--retrain_trials: trial "
                     r"5 is not one of the --num_trials=5 trials \(they "
                     r"count from 0: 0\.\.4\)"):
    _config(tmp_path, glue_dir, "--num_trials=5", "--retrain_trials=5,1")
  with pytest.raises(configure.ConfigError,
                     match="^--teacher_output_trials: trial 3 is not one"):
    _config(tmp_path, glue_dir, "--num_trials=3", "--teacher_output_trials=3")


@pytest.mark.parametrize("args,message", [
    # A teacher list with no folder trained a student with no teacher at
    # all (lambda still rose), and an empty task name blamed --task_names.
    (("--distill", "--teachers=rte:+"), "^--teachers: 'rte:\\+' names no "
     "teacher folder$"),
    (("--distill", "--teachers=all:+"), "^--teachers: 'all:\\+' names no "
     "teacher folder$"),
    (("--distill", "--teachers=rte:d+d"), "^--teachers: 'rte:d\\+d' names a "
     "teacher twice$"),
    (("--distill", "--teachers=:d"), "^--teachers: ':d' names no task"),
    # '²' passes str.isdigit() but not int(): a traceback before.
    (("--retrain_trials=\u00b2",), "^--retrain_trials: "),
    (("--teacher_output_trials=\u00b2",), "^--teacher_output_trials: "),
])
def test_teacher_lists_and_trial_numbers_refused(tmp_path, glue_dir, args,
                                                 message):
  with pytest.raises(configure.ConfigError, match=message):
    _config(tmp_path, glue_dir, "--task_names=rte", *args)


def test_distill_weight_is_only_the_fixed_schedules(tmp_path, glue_dir):
  # Under teacher annealing (the default) a weight would be ignored.
  with pytest.raises(configure.ConfigError, match=r"^--distill_weight: 0.3 "
                     "is the weight of --distill_schedule=fixed; the "
                     "annealing schedule would ignore it$"):
    _config(tmp_path, glue_dir, "--distill_weight=0.3")
  c = _config(tmp_path, glue_dir, "--distill_schedule=fixed",
              "--distill_weight=0.3")
  assert (c.distill_schedule, c.distill_weight) == ("fixed", 0.3)


def test_length_sorted_parts_need_shapes_that_may_vary(tmp_path, glue_dir):
  c = _config(tmp_path, glue_dir, "--length_sorted_part_size=8")
  assert c.train_part_size == 8
  with pytest.raises(configure.ConfigError, match="--length_sorted_part_size:"
                     " not with --jit_compile"):
    _config(tmp_path, glue_dir, "--length_sorted_part_size=8",
            "--jit_compile")
  with pytest.raises(configure.ConfigError, match="--length_sorted_part_size:"
                     " must be >= 0"):
    _config(tmp_path, glue_dir, "--length_sorted_part_size=-1")
  # Fixed shapes (--dynamic_padding=false, a TPU): the batch stays whole.
  c = _config(tmp_path, glue_dir, "--length_sorted_part_size=8",
              "--dynamic_padding=false", "--jit_compile")
  assert c.train_part_size == 0


def test_missing_data_dir_and_encoder_positions(tmp_path, glue_dir):
  with pytest.raises(configure.ConfigError, match="--data_dir"):
    _config(tmp_path, glue_dir, f"--data_dir={tmp_path}/missing")
  # Checked where the encoder is loaded (the debug encoder has 512).
  from bam_tf.modeling import encoders  # pylint: disable=g-import-not-at-top
  c = _config(tmp_path, glue_dir, "--max_seq_length=600", "--debug")
  with pytest.raises(configure.ConfigError, match="--max_seq_length: 600 is "
                     "above the encoder's 512 position embeddings"):
    encoders.load_encoder_and_tokenizer(c)


def test_unknown_flag_is_an_error(tmp_path, glue_dir):
  with pytest.raises(flags.UnrecognizedFlagError):
    _config(tmp_path, glue_dir, "--lerning_rate=1e-4")


def test_model_dir_with_another_configuration_is_refused(tmp_path, glue_dir):
  from bam_tf import runner  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "run"
  first = _config(model_dir, glue_dir, "--task_names=rte")
  runner.claim_model_dir(first)
  (model_dir / "marker").write_text("from the first run")
  # Reporting/length-of-run settings may change on a rerun.
  runner.claim_model_dir(_config(model_dir, glue_dir, "--task_names=rte",
                                 "--num_trials=5", "--log_every_steps=3"))
  other = _config(model_dir, glue_dir, "--task_names=rte",
                  "--learning_rate=2e-5")
  with pytest.raises(configure.ConfigError, match=r"--model_dir: .*\(differs "
                     r"in: learning_rate\); use another --model_dir, or "
                     "--overwrite"):
    runner.claim_model_dir(other)
  assert (model_dir / "marker").exists()
  runner.claim_model_dir(_config(model_dir, glue_dir, "--task_names=rte",
                                 "--learning_rate=2e-5", "--overwrite"))
  assert not (model_dir / "marker").exists()


def test_flags_fields_and_rerun_safe_come_from_one_table():
  configure.define_flags()
  configure.define_flags()  # idempotent
  settings = {s.name: s for s in configure.SETTINGS}
  assert len(settings) == len(configure.SETTINGS)
  fields = {f.name: f for f in dataclasses.fields(configure.BamConfig)}
  assert set(fields) == set(settings)
  for name, s in settings.items():
    if s.derived:
      assert name not in flags.FLAGS
      continue
    flag = flags.FLAGS[name]
    default = list(s.default) if s.kind == "list" else s.default
    assert flag.default == default and flag.help.endswith(s.help), name
    if s.kind == "enum":
      assert list(flag.parser.enum_values) == list(s.values), name
    has_default = fields[name].default is not dataclasses.MISSING or (
        fields[name].default_factory is not dataclasses.MISSING)
    assert has_default != s.required, name
  assert {"tasks", "teacher_dirs", "teacher_flagfiles"} == {
      n for n, s in settings.items() if s.derived}
  assert configure.RERUN_SAFE == {n for n, s in settings.items()
                                  if s.rerun_safe}
  assert {"mode", "num_trials", "strategy"} <= configure.RERUN_SAFE
  assert "learning_rate" not in configure.RERUN_SAFE
  assert configure.MULTI_TASK_DEFAULTS == dict(
      learning_rate=1e-4, num_train_epochs=6.0, train_batch_size=128)
  assert configure.SINGLE_TASK_DEFAULTS == dict(
      learning_rate=5e-5, num_train_epochs=3.0, train_batch_size=32)
  assert configure.DEBUG_DEFAULTS == dict(num_train_epochs=3.0,
                                          train_batch_size=32)


def test_keyword_construction_keeps_field_defaults(tmp_path, glue_dir):
  c = _config(tmp_path, glue_dir, "--task_names=rte")
  required = {s.name: getattr(c, s.name) for s in configure.SETTINGS
              if s.required}
  bare = configure.BamConfig(**required)
  # The field default differs from the flag's (["0"]) as it always has.
  assert bare.teacher_output_trials == [] and bare.tasks == []
  assert (bare.distill, bare.strategy, bare.loss_reduction) == (
      False, "one_device", "sum")
  bare.retrain_trials.append("1")  # instances do not share lists
  assert configure.BamConfig(**required).retrain_trials == []
  with pytest.raises(TypeError):
    configure.BamConfig(**dict(required, learning_rate=None, nope=1))


@pytest.mark.parametrize("value,expected", [("auto", None), ("true", True),
                                            ("false", False)])
def test_do_lower_case_flag_to_field(tmp_path, glue_dir, value, expected):
  c = _config(tmp_path, glue_dir, f"--do_lower_case={value}")
  assert c.do_lower_case is expected


def test_from_json_round_trips(tmp_path, glue_dir):
  c = _config(tmp_path, glue_dir, "--task_names=cola,rte",
              "--do_lower_case=false", "--num_trials=2", "--retrain_trials=1",
              "--learning_rate=3e-5")
  saved = c.to_json_dict()
  again = configure.BamConfig.from_json(saved)
  assert again == c and again.to_json_dict() == saved
  assert [t.name for t in again.tasks] == ["cola", "rte"]
  assert configure.BamConfig.from_json(
      saved, learning_rate=1e-5).learning_rate == 1e-5


def test_from_json_old_and_unknown_keys(tmp_path, glue_dir):
  saved = _config(tmp_path, glue_dir, "--task_names=rte").to_json_dict()
  saved["a_setting_since_removed"] = 3
  for key in ("loss_reduction", "length_bucketing", "teacher_output_trials",
              "teacher_dirs", "tasks"):
    saved.pop(key)
  c = configure.BamConfig.from_json(saved)
  assert (c.loss_reduction, c.length_bucketing, c.teacher_output_trials) == (
      "sum", False, [])
  assert [t.name for t in c.tasks] == ["rte"]
  saved.pop("learning_rate")
  assert configure.missing_settings(saved) == ["learning_rate"]
  with pytest.raises(configure.ConfigError, match="learning_rate"):
    configure.BamConfig.from_json(saved)


def test_from_json_without_the_training_data(tmp_path, glue_dir):
  saved = _config(tmp_path, glue_dir, "--task_names=sts").to_json_dict()
  saved["data_dir"] = str(tmp_path / "gone")
  with pytest.raises(configure.ConfigError, match="^--data_dir: .* is not a "
                     "directory"):
    configure.BamConfig.from_json(saved)
  c = configure.BamConfig.from_json(saved, need_data=False)
  assert c.data_dir == saved["data_dir"] and c.tasks[0].name == "sts"
  # Only the data_dir checks are skipped.
  with pytest.raises(configure.ConfigError, match="--learning_rate: must be "
                     "> 0"):
    configure.BamConfig.from_json(saved, need_data=False, learning_rate=0.0)


def test_init_from_check_looks_where_warm_start_reads():
  from bam_tf.training import warm_start  # pylint: disable=g-import-not-at-top
  assert configure.final_weights_index("runs/multi", 2) == os.path.join(
      "runs/multi", "trial_2", warm_start.FINAL_DIR,
      warm_start.FINAL_PREFIX + ".index")


@pytest.mark.parametrize("arg,message", [
    ("--clip_norm=inf", "--clip_norm: must be > 0 and finite, got inf"),
    ("--weight_decay_rate=nan", "--weight_decay_rate: must be >= 0 and "
     "finite, got nan"),
    ("--distill_temperature=inf", "--distill_temperature: must be > 0 and "
     "finite, got inf"),
    ("--seed=4294967296", r"--seed: must be in \[0, 2\^32\)"),
    ("--trial=-2", "--trial: must be >= 0"),
])
def test_non_finite_and_out_of_range_values(tmp_path, glue_dir, arg,
                                            message):
  with pytest.raises(configure.ConfigError, match=message):
    _config(tmp_path, glue_dir, arg)


def test_flagfiles_naming_runs_not_trained_yet_still_resolve(tmp_path,
                                                             glue_dir):
  """--init_from and model_dir are checked by check_paths (run time), not
  when a flagfile is resolved: a recipe's later stage names a run its first
  stage trains."""
  c = _config(tmp_path / "run", glue_dir, f"--init_from={tmp_path}/multi")
  with pytest.raises(configure.ConfigError, match="--init_from: .*multi is "
                     "not a folder"):
    configure.check_paths(c)


def test_predict_checks_the_data_of_the_runs_own_tasks(tmp_path, glue_dir):
  # A CoLA run predicted from TFDS: the check names glue/cola, the run's
  # task, not glue/rte (the --task_names default this command never used).
  model_dir = tmp_path / "cola_run"
  model_dir.mkdir()
  run = _config(model_dir, glue_dir, "--task_names=cola")
  (model_dir / "config.json").write_text(json.dumps(run.to_json_dict()))
  empty = tmp_path / "tfds"
  empty.mkdir()
  c = _config(model_dir, glue_dir, "--mode=predict", "--data_source=tfds",
              f"--tfds_data_dir={empty}")
  with pytest.raises(configure.ConfigError, match="glue/cola") as e:
    configure.check_paths(c)
  assert "glue/rte" not in str(e.value)


def test_overwrite_deletes_only_a_bam_tf_run(tmp_path, glue_dir):
  """A Hugging Face model folder given as --model_dir (its config.json is
  another tool's) survives --overwrite: refused before anything is
  written, and again under the lock."""
  from bam_tf import runner  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "minilm"
  model_dir.mkdir()
  hf = {"architectures": ["BertModel"], "hidden_size": 384,
        "model_type": "bert", "vocab_size": 30522}
  (model_dir / "config.json").write_text(json.dumps(hf))
  (model_dir / "model.safetensors").write_bytes(b"weights")
  c = _config(model_dir, glue_dir, "--task_names=rte", "--overwrite")
  message = (r"^--model_dir: .*minilm/config.json is not a bam_tf run's \(it "
             r"has no task_names or model_dir\), so --overwrite does not "
             r"delete that folder; use another --model_dir$")
  with pytest.raises(configure.ConfigError, match=message):
    configure.check_paths(c)
  with pytest.raises(configure.ConfigError, match=message):
    runner.claim_model_dir(c)
  assert sorted(p.name for p in model_dir.iterdir() if p.name != ".lock") == [
      "config.json", "model.safetensors"]
  assert json.loads((model_dir / "config.json").read_text()) == hf


def test_config_json_cut_short_is_refused_or_overwritten(tmp_path, glue_dir):
  from bam_tf import runner  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  (model_dir / "config.json").write_text('{\n  "adam_bias_')
  (model_dir / "marker").write_text("from the cut run")
  c = _config(model_dir, glue_dir, "--task_names=rte")
  with pytest.raises(configure.ConfigError, match=r"^--model_dir: .*run/"
                     r"config.json:2: not valid JSON \(.*\); --overwrite "
                     "deletes the run"):
    configure.check_paths(c)
  c = _config(model_dir, glue_dir, "--task_names=rte", "--overwrite")
  configure.check_paths(c)
  dir_lock = runner.claim_model_dir(c)
  try:
    assert not (model_dir / "marker").exists()
    assert configure.read_saved_config(str(model_dir), "") == (
        c.to_json_dict())
  finally:
    if dir_lock is not None:
      dir_lock.release()
