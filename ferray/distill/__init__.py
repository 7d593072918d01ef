"""Distillation: one small student trained on a sweep's ensemble, compared with it.

The student learns to match the chosen ensemble (softened at a temperature) together with
the hard labels, on every cross-validation row of the run's data, in one Ray Train worker:
by default the ensemble's member models score every augmented, mixed batch the student
sees (an online teacher, leak-free per fold), or else its stored out-of-fold probabilities.
Of several candidate backbones, those within a latency cap are compared on one fold. The
student is scored on the holdout next to the ensemble and the best single trial
(accuracy, macro-F1, parameters, latency).

>>> from ferray.distill import distill_run
>>> result = distill_run("runs/quickstart-20261130-120000")   # doctest: +SKIP
>>> result.summary["student"]["latency_ms_per_image"]         # doctest: +SKIP
"""

# Exports load on first use: the loss and teacher checks need torch, distill_run needs Ray.
from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    "distill_run": "ferray.distill._run",
    "DistillResult": "ferray.distill._run",
    "student_config": "ferray.distill._run",
    "soften": "ferray.distill._loss",
    "distillation_loss": "ferray.distill._loss",
    "DistillationLoss": "ferray.distill._loss",
    "TeacherTargets": "ferray.distill._teacher",
    "teacher_targets": "ferray.distill._teacher",
    "pack_targets": "ferray.distill._teacher",
    "read_ensemble_predictions": "ferray.distill._teacher",
    "EnsembleMembers": "ferray.distill._teacher",
    "read_ensemble_members": "ferray.distill._teacher",
    "label_images": "ferray.distill._teacher",
    "StudentTrainer": "ferray.distill._worker",
    "OnlineTeacher": "ferray.distill._online",
    "Combiner": "ferray.distill._online",
    "combiner_of": "ferray.distill._online",
    "pack_teacher": "ferray.distill._online",
    "teacher_groups": "ferray.distill._online",
    "TRANSFER_GROUP": "ferray.distill._online",
    "candidate_latencies": "ferray.distill._select",
    "apply_latency_cap": "ferray.distill._select",
    "latency_cap": "ferray.distill._select",
    "pick_candidate": "ferray.distill._select",
    "count_parameters": "ferray.distill._bench",
    "measure_latency": "ferray.distill._bench",
    "group_latency": "ferray.distill._bench",
    "holdout_scores": "ferray.distill._bench",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.distill._bench import count_parameters, group_latency, holdout_scores, measure_latency
    from ferray.distill._loss import DistillationLoss, distillation_loss, soften
    from ferray.distill._online import (
        TRANSFER_GROUP,
        Combiner,
        OnlineTeacher,
        combiner_of,
        pack_teacher,
        teacher_groups,
    )
    from ferray.distill._run import DistillResult, distill_run, student_config
    from ferray.distill._select import apply_latency_cap, candidate_latencies, latency_cap, pick_candidate
    from ferray.distill._teacher import (
        EnsembleMembers,
        TeacherTargets,
        label_images,
        pack_targets,
        read_ensemble_members,
        read_ensemble_predictions,
        teacher_targets,
    )
    from ferray.distill._worker import StudentTrainer
