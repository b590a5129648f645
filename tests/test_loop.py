"""hypergan_tf/methods/loop.py's signal handling, on plain Python steps."""

import os
import signal

import pytest

from hypergan_tf.methods import loop


def test_sigterm_stops_before_the_next_step_not_inside_one():
  steps = []

  def step_that_gets_the_signal():
    os.kill(os.getpid(), signal.SIGTERM)
    steps.append('finished')  # The handler did not raise inside the step.

  previous = signal.getsignal(signal.SIGTERM)
  with pytest.raises(KeyboardInterrupt, match='SIGTERM'):
    with loop.sigterm_between_steps() as run_step:
      run_step(step_that_gets_the_signal)
      run_step(lambda: steps.append('never run'))
  assert steps == ['finished']
  assert signal.getsignal(signal.SIGTERM) is previous


def test_sigterm_after_the_last_step_stops_on_exit():
  with pytest.raises(KeyboardInterrupt, match='SIGTERM'):
    with loop.sigterm_between_steps() as run_step:
      run_step(lambda: None)
      os.kill(os.getpid(), signal.SIGTERM)  # During the final evaluation.
  with loop.sigterm_between_steps() as run_step:  # No signal: no stop.
    assert run_step(lambda: 3) == 3
