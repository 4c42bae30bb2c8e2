"""The time budget of a run under ``--time-limit`` (``TimeBudget``): how many steps fit, how often to evaluate."""
from __future__ import annotations

import math
import time


class TimeBudget:
    """Fits a run into ``--time-limit``: the whole job, from set-up to the final evaluation.

    After a few steps it knows the seconds per step; the step-0 evaluation tells what an evaluation
    costs, split into the part that grows with the number of images (embedding and probes) and the
    part that does not (map and indicators). From those it sets the number of steps so that the
    training, the evaluations on the way and the final evaluation on the whole splits end in time.
    It plans again at every evaluation and every ``REPLAN_SECONDS``, with what it measured since; the
    learning-rate schedule follows the new length.
    """

    WARM_UP_STEPS = 5  # not timed: the first steps pay for cuDNN's search and the allocator
    FIRST_PLAN_STEP = 25  # the first plan, after 20 timed steps
    REPLAN_SECONDS = 15.0  # plan again this often (and at every evaluation), with what was measured since
    PROBE_GROWTH = 1.3  # see measured_evaluation
    SAFETY = 0.95  # aim a little short: the final evaluation's estimate is a scaling, not a measurement
    MAX_EVAL_SHARE = 0.2  # the evaluations on the way take at most this share of the time (eval_interval)
    MAX_REFERENCES_SHARE = 0.25  # uncached references on the whole splits: measured at the end within this share

    def __init__(self, minutes: float, started: float):
        self.limit = 60.0 * minutes
        self.started = started
        self.eval_seconds: float | None = None  # the latest evaluation, without the references
        self.references_seconds = 0.0  # the step-0 probes of a random init and of the pixels
        self.skip_references = False  # the end's references do not fit: left out (measured_evaluation)
        self.references_estimate = 0.0  # seconds the end's references would take (0 when cached or unknown)
        self.final_seconds: float | None = None  # estimate for the final evaluation
        # (steps done, time, seconds of evaluation so far) where the step timer starts
        self.timing_from: tuple[int, float, float] | None = None
        self.last_plan = 0.0

    def due(self, steps_done: int, eval_seconds: float) -> bool:
        """Called after every step: starts the step timer after the warm-up, says when to plan."""
        now = time.perf_counter()
        if steps_done == self.WARM_UP_STEPS:
            self.timing_from = (steps_done, now, eval_seconds)
        return steps_done == self.FIRST_PLAN_STEP or (steps_done > self.FIRST_PLAN_STEP
                                                       and now - self.last_plan > self.REPLAN_SECONDS)

    def measured_evaluation(self, seconds: float, fixed_seconds: float, references_seconds: float, scale: float,
                            references_cached: bool = False):
        """One evaluation took ``seconds``: ``fixed_seconds`` for the map and indicators (the same at the
        end), ``references_seconds`` for the random-init and pixel probes (step 0 only), the rest for
        embedding and probing subsets, which the end does on ``scale`` times as many images. The end's
        references cost nothing when they are cached (engine/references.py); when they are not and
        their estimate exceeds MAX_REFERENCES_SHARE of the limit, ``skip_references`` leaves them out
        (so does a run with no step-0 measure to estimate them from: resumed, or its step-0 references
        read from the cache)."""
        if references_seconds:
            self.references_seconds = references_seconds
        self.eval_seconds = seconds - references_seconds  # the evaluations on the way have no references
        # the latest evaluation is the best guide: the first one also pays for warming up (cuDNN, kernels)
        own = seconds - fixed_seconds - references_seconds
        references = 0.0 if references_cached else self.references_seconds * scale * self.PROBE_GROWTH
        self.references_estimate = references
        self.skip_references = not references_cached and (
            not self.references_seconds or references > self.MAX_REFERENCES_SHARE * self.limit)
        self.final_seconds = fixed_seconds + own * scale * self.PROBE_GROWTH + (
            0.0 if self.skip_references else references)

    def eval_interval(self, asked: int, current: int, seconds_per_step: float) -> int:
        """Steps between the evaluations on the way: the interval asked for, or a whole multiple of it
        long enough that evaluating takes at most MAX_EVAL_SHARE of the time. The map and the indicators
        run on the CPU, so a faster device shrinks the steps but not the evaluations (on a shared H200
        the SimCLR preset trained 134 of its 219 s, evaluating every 2 epochs). ``current`` is
        kept while its share stays within a factor 1.5 of the target, so timing noise does not make
        the rhythm of the map's updates jump back and forth."""
        if not self.eval_seconds or seconds_per_step <= 0:
            return current
        target = self.MAX_EVAL_SHARE
        share = self.eval_seconds / (self.eval_seconds + current * seconds_per_step)
        if target / 1.5 <= share <= target * 1.5 or (current == asked and share <= target * 1.5):
            return current
        needed = self.eval_seconds * (1 - target) / (target * seconds_per_step)
        return asked * max(1, math.ceil(needed / asked - 1e-9))

    def total_steps(self, now: float, step: int, seconds_per_step: float, eval_every: int, planned: int) -> int:
        left = self.limit * self.SAFETY - (now - self.started)
        left -= self.final_seconds if self.final_seconds is not None else 0.15 * self.limit
        per_step = seconds_per_step + ((self.eval_seconds or 0.0) / eval_every if eval_every else 0.0)
        return int(min(planned, step + max(0.0, left) // max(per_step, 1e-9)))
