"""Deliberately wrong Adams, one per known fault, for tests/test_check.py.

Each is a small ``torch.optim.Optimizer`` with ``torch.optim.Adam``'s
constructor, written the way the mistake is made in practice (not through
:mod:`adamref.check`'s own fault switches), so that the check is shown to
recognise the fault from the outside.  ``WRONG[fault]`` is the class whose
mistake the check should name ``fault``.
"""

import math

import torch


class PlainAdam(torch.optim.Optimizer):
    """A straightforward for-loop Adam; subclasses override one piece to add a fault."""

    FAULT = None

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize, decoupled=decoupled_weight_decay)
        super().__init__(params, defaults)

    # the pieces a fault changes
    def bias_corrections(self, beta1, beta2, t):
        return 1 - beta1 ** t, 1 - beta2 ** t

    def one_minus(self, beta):
        return 1 - beta

    def decay(self, p, g, lr, wd, decoupled):
        if decoupled:
            p.mul_(1 - lr * wd)
            return g
        return g.add(p, alpha=wd)

    def denominator(self, v, bc2, eps):
        return (v.sqrt() / math.sqrt(bc2)).add_(eps)

    def amsgrad_max(self, v_max, v, bc2):
        """AMSGrad: keep ``max(v_max, v)``; return what to use for ``v`` and its correction."""
        torch.maximum(v_max, v, out=v_max)
        return v_max, bc2

    def maximize_sign(self, maximize):
        return -1.0 if maximize else 1.0

    def after_update(self, p, lr, wd, decoupled):
        pass

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = int(state["step"].item())
                g = p.grad * self.maximize_sign(group["maximize"])
                if wd:
                    g = self.decay(p, g, lr, wd, group["decoupled"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=self.one_minus(beta1))
                v.mul_(beta2).addcmul_(g, g, value=self.one_minus(beta2))
                bc1, bc2 = self.bias_corrections(beta1, beta2, t)
                if group["amsgrad"]:
                    v, bc2 = self.amsgrad_max(state["max_exp_avg_sq"], v, bc2)
                p.addcdiv_(m, self.denominator(v, bc2, eps), value=-lr / bc1)
                self.after_update(p, lr, wd, group["decoupled"])


class EpsInsideSqrt(PlainAdam):
    FAULT = "eps-inside-sqrt"

    def denominator(self, v, bc2, eps):
        return (v / bc2 + eps).sqrt()


class EpsHat(PlainAdam):
    """TensorFlow/Keras: lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t), denom sqrt(v) + eps."""
    FAULT = "eps-hat"

    def denominator(self, v, bc2, eps):
        return (v.sqrt() + eps) / math.sqrt(bc2)


class NoBiasCorrection(PlainAdam):
    FAULT = "no-bias-correction"

    def bias_corrections(self, beta1, beta2, t):
        return 1.0, 1.0


class OnlyMCorrected(PlainAdam):
    FAULT = "only-m-corrected"

    def bias_corrections(self, beta1, beta2, t):
        return 1 - beta1 ** t, 1.0


class OnlyVCorrected(PlainAdam):
    FAULT = "only-v-corrected"

    def bias_corrections(self, beta1, beta2, t):
        return 1.0, 1 - beta2 ** t


class DecaySwapped(PlainAdam):
    FAULT = "decay-swapped"

    def decay(self, p, g, lr, wd, decoupled):
        return super().decay(p, g, lr, wd, not decoupled)


class DecayNotScaledByLr(PlainAdam):
    FAULT = "decay-not-scaled-by-lr"

    def decay(self, p, g, lr, wd, decoupled):
        if decoupled:
            p.mul_(1 - wd)
            return g
        return g.add(p, alpha=wd)


class AmsgradMaxOfVhat(PlainAdam):
    FAULT = "amsgrad-max-of-vhat"

    def amsgrad_max(self, v_max, v, bc2):
        torch.maximum(v_max, v / bc2, out=v_max)
        return v_max, 1.0


class MaximizeIgnored(PlainAdam):
    FAULT = "maximize-ignored"

    def maximize_sign(self, maximize):
        return 1.0


class BiasCorrectionFloat32(PlainAdam):
    FAULT = "bias-correction-float32"

    def bias_corrections(self, beta1, beta2, t):
        f = torch.float32
        one = torch.tensor(1.0, dtype=f)
        bc1 = one - torch.tensor(beta1, dtype=f) ** torch.tensor(float(t), dtype=f)
        bc2 = one - torch.tensor(beta2, dtype=f) ** torch.tensor(float(t), dtype=f)
        return bc1.item(), bc2.item()


class AmsgradIgnored(PlainAdam):
    FAULT = "amsgrad-ignored"

    def amsgrad_max(self, v_max, v, bc2):
        torch.maximum(v_max, v, out=v_max)
        return v, bc2


class CoefficientsFloat32(PlainAdam):
    FAULT = "coefficients-float32"

    def one_minus(self, beta):
        return (torch.tensor(1.0) - torch.tensor(beta, dtype=torch.float32)).item()


class DecayAfterUpdate(PlainAdam):
    """AdamW's p <- (1 - lr wd) p applied to the updated parameter."""
    FAULT = "decay-after-update"

    def decay(self, p, g, lr, wd, decoupled):
        return g if decoupled else g.add(p, alpha=wd)

    def after_update(self, p, lr, wd, decoupled):
        if wd and decoupled:
            p.mul_(1 - lr * wd)


class StepCountedTwice(PlainAdam):
    FAULT = "step-count-off-by-one"

    def bias_corrections(self, beta1, beta2, t):
        return super().bias_corrections(beta1, beta2, t + 1)


WRONG = {cls.FAULT: cls for cls in (EpsInsideSqrt, EpsHat, NoBiasCorrection, OnlyMCorrected,
                                     OnlyVCorrected, DecaySwapped, DecayNotScaledByLr,
                                     AmsgradMaxOfVhat, AmsgradIgnored, MaximizeIgnored,
                                     BiasCorrectionFloat32, CoefficientsFloat32,
                                     DecayAfterUpdate, StepCountedTwice)}


# ---------------------------------------------------------------- right, written otherwise
class TextbookAdam(PlainAdam):
    """Kingma & Ba's Algorithm 1 as printed: m_hat and v_hat formed explicitly."""

    def denominator(self, v, bc2, eps):
        return (v / bc2).sqrt().add_(eps)


class Float64InsideAdam(PlainAdam):
    """Every step computed in float64 and rounded back to the parameter's dtype."""

    @torch.no_grad()
    def step(self):
        saved = {}
        for group in self.param_groups:
            for p in group["params"]:
                saved[p] = (p.data, p.grad)
                state = self.state[p]
                for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                    if key in state:
                        state[key] = state[key].double()
                p.data, p.grad = p.data.double(), p.grad.double()
        super().step()
        for p, (data, grad) in saved.items():
            data.copy_(p.data)
            p.data, p.grad = data, grad
            state = self.state[p]
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                if key in state:
                    state[key] = state[key].to(data.dtype)


RIGHT = (PlainAdam, TextbookAdam, Float64InsideAdam)


class WrongAdamW(PlainAdam):
    """An AdamW (decoupled by default, torch.optim.AdamW's constructor) that does L2."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=False)
