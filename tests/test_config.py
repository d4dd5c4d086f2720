"""Flag -> config resolution: task defaults, explicit flags, validation."""

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
  assert not c.is_multi_task


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
])
def test_invalid_values_name_the_flag(tmp_path, glue_dir, arg, message):
  with pytest.raises(configure.ConfigError, match=message):
    _config(tmp_path, glue_dir, arg)


def test_missing_data_dir_and_encoder_positions(tmp_path, glue_dir):
  with pytest.raises(configure.ConfigError, match="--data_dir"):
    _config(tmp_path, glue_dir, f"--data_dir={tmp_path}/missing")
  c = _config(tmp_path, glue_dir, "--max_seq_length=600")
  with pytest.raises(configure.ConfigError, match="--max_seq_length: 600 is "
                     "above the encoder's 512 position embeddings"):
    configure.check_against_encoder(c, 512)


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
