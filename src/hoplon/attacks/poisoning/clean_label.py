"""Clean-label backdoor (Turner, Tsipras, Madry 2019): perturbed target-class inputs carry the trigger,
labels untouched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hoplon.attacks.poisoning._private import check_class, check_rate, check_target_in, choose, clip_to
from hoplon.attacks.poisoning.badnets import BadNets
from hoplon.attacks.poisoning.registry import register_poisoning
from hoplon.attacks.poisoning.types import PoisonedData
from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.data import Dataset
    from hoplon.recipes import Recipe

__all__ = ["CleanLabel"]


@register_poisoning("clean-label")
@dataclass(frozen=True, kw_only=True)
class CleanLabel:
    """Make target-class training images hard to learn (PGD away from their class on a surrogate model),
    stamp the BadNets patch on them, and keep their correct labels.

    Threat model: the attacker adds ``rate`` of the training set, all correctly labelled images of
    ``target_class``, so a human label audit finds nothing. Because their natural features are destroyed, the
    model learns the patch as the evidence for the class. The surrogate is trained by ``surrogate_recipe``
    (default: the demo architecture for the data's kind, 5 epochs) on the clean data.

    References:
        Turner, Tsipras, Madry. Label-Consistent Backdoor Attacks. 2019. https://arxiv.org/abs/1912.02771

    Args:
        rate: share of the training set poisoned, in (0, 1); at most the share of the target class.
        target_class: the class triggered inputs go to (default 0).
        eps: L∞ budget of the perturbation as a fraction of the box width, in (0, 1] (default 0.3).
        steps: PGD steps (default 20).
        patch_size: side of the BadNets patch (default 3).
        surrogate_recipe: how the surrogate is trained (optional).
    """

    rate: float
    target_class: int = 0
    eps: float = 0.3
    steps: int = 20
    patch_size: int = 3
    surrogate_recipe: Recipe | None = None

    def __post_init__(self) -> None:
        check_rate(self.rate, "CleanLabel")
        check_class(self.target_class, "CleanLabel")
        if not 0 < self.eps <= 1:
            raise InputError(f"The 'eps' parameter of CleanLabel must be in (0, 1]. Got {self.eps!r}.")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise InputError(f"The 'steps' parameter of CleanLabel must be an int >= 1. Got {self.steps!r}.")

    def _patch(self) -> BadNets:
        return BadNets(rate=self.rate, target_class=self.target_class, patch_size=self.patch_size)

    def apply_trigger(self, x: torch.Tensor, data: Dataset) -> torch.Tensor:
        return self._patch().apply_trigger(x, data)

    def run(self, data: Dataset, *, seed: int = 0) -> PoisonedData:
        import torch
        from torch.nn import functional as F

        from hoplon.data import Dataset
        from hoplon.recipes import Recipe, train

        check_target_in(data, self.target_class, "CleanLabel")
        self._patch()._window(data.sample_shape)
        index = choose((data.y == self.target_class).nonzero()[:, 0], data.n, self.rate, seed, "CleanLabel")
        recipe = self.surrogate_recipe or Recipe(factory="digits-cnn", epochs=5, seed=seed)
        surrogate, _ = train(recipe, data.x, data.y, n_classes=int(data.y.max()) + 1, seed=seed)
        for p in surrogate.parameters():
            p.requires_grad_(False)
        x0 = data.x[index]
        span = (data.bounds.upper - data.bounds.lower).float()
        eps = self.eps * span
        step = 2.5 * eps / self.steps
        x_adv = x0.clone()
        labels = data.y[index]
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(surrogate(x_adv), labels)
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = x_adv + step * grad.sign()
                x_adv = clip_to(torch.maximum(torch.minimum(x_adv, x0 + eps), x0 - eps), data)
        x = data.x.clone()
        x[index] = self.apply_trigger(x_adv.detach(), data)
        poisoned = Dataset(
            x=x,
            y=data.y,
            bounds=data.bounds,
            name=f"{data.name}+clean-label",
            kind=data.kind,
            feature_names=data.feature_names,
        )
        return PoisonedData(data=poisoned, poison_index=index, target_class=self.target_class, source_labels=labels)
