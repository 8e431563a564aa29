"""Knowledge distillation from the study's teacher (a choice family, opt-in).

- none: the hard loss alone.
- kl: Hinton et al. 2015: the KL divergence from the teacher's to the student's distribution, both
  softened by `temperature`, scaled by temperature^2 (so its gradients keep their size as the
  temperature changes), weighted `alpha`; the strategy's own (hard) loss weighted 1 - alpha.
- mse: the mean squared difference of the logits (Ba & Caruana 2014; Tang et al. 2019 distil BERT
  into a BiLSTM so), weighted `alpha`; the hard loss 1 - alpha.

The teacher's logits on the training split are computed once in the driver (`trainables.teacher`)
and arrive with each batch. A task offers `TEACHER_OUTPUTS` when it can carry them; a study names
the family only together with a `teacher:` (search.config refuses it otherwise).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spaces._base import Component, Float, between, positive, registry

TEACHER_OUTPUTS = "teacher_outputs"  # what a task offers: the teacher's logits over classes, per training example

_ALPHA = Float(0.0, 1.0, limits=between(0.0, 1.0), doc="the soft term's weight (the hard loss gets 1 - alpha)")


class Distillation:
    """Mixes a batch's hard loss with a soft term that compares the student's logits to the teacher's."""

    def __init__(self, *, alpha: float) -> None:
        self.alpha = alpha

    def soft(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, hard_loss: torch.Tensor, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """(1 - alpha) x hard_loss + alpha x the soft term, in float32."""
        return (1 - self.alpha) * hard_loss + self.alpha * self.soft(student_logits.float(), teacher_logits.float())


class KLDistillation(Distillation):
    def __init__(self, *, temperature: float, alpha: float) -> None:
        super().__init__(alpha=alpha)
        self.temperature = temperature

    def soft(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """T^2 x KL(softmax(teacher / T) || softmax(student / T)), averaged over examples."""
        t = self.temperature
        student = F.log_softmax(student_logits / t, dim=-1)
        teacher = F.log_softmax(teacher_logits / t, dim=-1)
        return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * t * t


class MSEDistillation(Distillation):
    def soft(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """The mean over examples and classes of (student - teacher)^2."""
        return F.mse_loss(student_logits, teacher_logits)


DISTILLATION = registry(
    "distillation",
    "choice",
    [
        Component("none", {}, None, "the hard loss alone"),
        Component(
            "kl",
            {"temperature": Float(1.0, 10.0, limits=positive(), doc="a softening temperature"), "alpha": _ALPHA},
            KLDistillation, "KL to the teacher's softened distribution, x T^2 (Hinton et al. 2015)", frozenset({TEACHER_OUTPUTS}),
        ),
        Component("mse", {"alpha": _ALPHA}, MSEDistillation, "squared error to the teacher's logits (Ba & Caruana 2014)", frozenset({TEACHER_OUTPUTS})),
    ],
    opt_in=True,
)
