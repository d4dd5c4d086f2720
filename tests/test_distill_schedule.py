"""Teacher-annealing schedules: lambda over training."""

import numpy as np
import pytest

from bam_tf.modeling.teacher_annealing import DistillSchedule, blend


def test_annealing_rises_linearly_from_0_to_1():
  s = DistillSchedule("annealing", total_steps=200)
  assert float(s.lam(0)) == 0.0            # first step: teacher only
  assert float(s.lam(74)) == pytest.approx(0.37)
  assert float(s.lam(100)) == pytest.approx(0.5)
  assert float(s.lam(199)) == pytest.approx(0.995)  # last update
  assert float(s.lam(200)) == 1.0 and float(s.lam(500)) == 1.0


def test_fixed_and_pure():
  fixed = DistillSchedule("fixed", total_steps=10, distill_weight=0.5)
  assert [float(fixed.lam(k)) for k in (0, 5, 9)] == [0.5, 0.5, 0.5]
  w03 = DistillSchedule("fixed", total_steps=10, distill_weight=0.3)
  gold, teacher = np.array([1.0, 0.0]), np.array([0.2, 0.8])
  # target = (1 - w) gold + w teacher
  np.testing.assert_allclose(blend(float(w03.lam(3)), gold, teacher),
                             0.7 * gold + 0.3 * teacher)
  pure = DistillSchedule("pure", total_steps=10)
  assert float(pure.lam(0)) == 0.0 and float(pure.lam(9)) == 0.0
  with pytest.raises(ValueError, match="schedule must be one of"):
    DistillSchedule("cosine", total_steps=10)
