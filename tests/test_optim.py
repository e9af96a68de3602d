"""adamref.optim: drop-in torch optimizers, bit for bit torch's fused Adam on the CPU.

Two claims, checked separately:

* On every build, a step of ``adamref.optim.Adam`` (one multi-tensor kernel
  per group) equals :func:`adamref.cpu.adam_step` applied to each tensor on
  its own, with that tensor's own step count, bit for bit.
* Against PyTorch, how close depends on PyTorch's build
  (``torch.backends.cpu.get_cpu_capability()``): on the builds in
  ``adamref.cpu.TORCH_BITWISE_BUILDS`` (AVX512, AVX2) every element equals
  ``torch.optim.Adam(fused=True)`` / ``AdamW(fused=True)`` /
  ``Adamax(foreach=False)`` bit for bit; on other builds (``DEFAULT``, ARM)
  each element is within ``4 * steps + 8`` ulps of the scale of the terms it
  was built from (``parity.shadow_scales``).
"""

import copy
import inspect
import io

import numba
import numpy as np
import pytest
import torch

from adamref import cpu, optim
import parity
from parity import assert_close_in_ulps, gradients, shadow_scales

CAPABILITY = torch.backends.cpu.get_cpu_capability()
SIZES = [1, 7, 8, 13, 16, 100, 1000, 4096 + 13, 70_001]      # several n mod 8 and n mod 16
DTYPES = [torch.float32, torch.float64]
FLAGS = [dict(), dict(weight_decay=0.1), dict(amsgrad=True, maximize=True),
         dict(weight_decay=0.1, amsgrad=True), dict(weight_decay=0.1, decoupled_weight_decay=True)]
STATE_NAMES = {"exp_avg": "m", "exp_avg_sq": "v", "max_exp_avg_sq": "v_max", "exp_inf": "u"}


# ---------------------------------------------------------------- helpers
def problem(seed, sizes, steps, dtype, none=0.0):
    """Initial parameters, gradients per step, and which are None (probability ``none``)."""
    rng = np.random.default_rng(seed)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    p0 = [rng.standard_normal(n).astype(np_dtype) for n in sizes]
    grads = [gradients(rng, n, steps, np_dtype, low=-4, high=2) for n in sizes]
    missing = rng.random((steps, len(sizes))) < none
    return p0, [[None if missing[t, i] else grads[i][t] for i in range(len(sizes))]
                for t in range(steps)]


def train(make, p0, grads, groups=None, on_step=None):
    """Parameters from ``p0``, an optimizer ``make(param_groups)``, one step per gradient set."""
    params = [torch.nn.Parameter(torch.tensor(p)) for p in p0]
    groups = groups or [{}]
    per = -(-len(params) // len(groups))
    opt = make([dict(g, params=params[i * per:(i + 1) * per]) for i, g in enumerate(groups)])
    for t, gs in enumerate(grads):
        for p, g in zip(params, gs):
            p.grad = None if g is None else torch.tensor(g)
        opt.step()
        if on_step is not None:
            on_step(t)
    return params, opt


def arrays(params, opt):
    """Per parameter: ``{"p": ..., "m": ..., ...}`` as NumPy copies (state it has)."""
    out = []
    for p in params:
        a = {"p": p.detach().numpy().copy()}
        for key, name in STATE_NAMES.items():
            if key in opt.state[p]:
                a[name] = opt.state[p][key].numpy().copy()
        a["step"] = float(opt.state[p]["step"]) if opt.state[p] else 0.0
        out.append(a)
    return out


def assert_bitwise(ours, theirs):
    """Per tensor: the same step count, and every array equal bit for bit."""
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a["step"] == b["step"], f"tensor {i}: step {a['step']} != {b['step']}"
        parity.assert_bitwise({k: x for k, x in a.items() if k != "step"},
                              {k: x for k, x in b.items() if k != "step"})


def assert_matches_torch(ours, theirs, p0=None, grads=None, hyper_of=None, adamax=False):
    """Bitwise on ``cpu.TORCH_BITWISE_BUILDS``; elsewhere each element within
    ``4 * steps + 8`` ulps of its scale (``parity.shadow_scales`` of tensor ``i``'s
    inputs and hyperparameters ``hyper_of(i)``)."""
    if CAPABILITY in cpu.TORCH_BITWISE_BUILDS:
        return assert_bitwise(ours, theirs)
    for a, b in zip(ours, theirs):
        assert a["step"] == b["step"] and set(a) == set(b)
    if hyper_of is None:
        pytest.skip(f"this check's torch side holds on torch's x86 builds (AVX512, AVX2) "
                    f"only; this one is {CAPABILITY}")
    for i, (a, b) in enumerate(zip(ours, theirs)):
        seen = [gs[i] for gs in grads if gs[i] is not None]     # what tensor i was stepped with
        if not seen:
            continue
        a = {k: x for k, x in a.items() if k != "step"}
        b = {k: x for k, x in b.items() if k != "step"}
        scales = shadow_scales(p0[i], np.stack(seen), hyper_of(i), adamax=adamax)
        assert_close_in_ulps(a, b, scales, 4 * len(seen) + 8, a["p"].dtype)
    return None


def per_tensor(p0, grads, hyper_of, adamax=False):
    """:func:`adamref.cpu.adam_step` (``adamax_step``) on each tensor on its own, each with
    its own step count (a None gradient skips the tensor and does not count)."""
    out = []
    for i, p in enumerate(p0):
        p, m, v, v_max = p.copy(), np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
        h = dict(hyper_of(i))
        t = 0
        for gs in grads:
            if gs[i] is None:
                continue
            t += 1
            if adamax:
                cpu.adamax_step(p, gs[i], m, v, t, **h)
            else:
                cpu.adam_step(p, gs[i], m, v, t, **h, v_max=v_max if h.get("amsgrad") else None)
        a = {"p": p, "step": float(t)}
        if t:
            a.update({"m": m, ("u" if adamax else "v"): v})
            if h.get("amsgrad"):
                a["v_max"] = v_max
        out.append(a)
    return out


def kernel_hyper(group):
    """torch-style group options as ``adam_step`` keywords."""
    h = dict(lr=group.get("lr", 1e-3), weight_decay=group.get("weight_decay", 0.0),
             amsgrad=group.get("amsgrad", False), maximize=group.get("maximize", False),
             decoupled=group.get("decoupled_weight_decay", False))
    beta1, beta2 = group.get("betas", (0.9, 0.999))
    return dict(h, beta1=beta1, beta2=beta2, eps=group.get("eps", 1e-8))


# ---------------------------------------------------------------- parity
@pytest.mark.parametrize("dtype,flags",
                         [(torch.float32, f) for f in FLAGS]
                         + [(torch.float64, f) for f in (FLAGS[0], FLAGS[3])], ids=str)
def test_adam_every_flag_equals_the_kernel_and_torch_fused(dtype, flags):
    """Several sizes (scalar tails of every length), None gradients now and then, 12 steps
    (float64: the plain and the L2 + AMSGrad kernels)."""
    p0, grads = problem(1, SIZES, 12, dtype, none=0.15)
    kw = dict(flags, lr=1e-2)
    ours = arrays(*train(lambda g: optim.Adam(g, **kw), p0, grads))
    theirs = arrays(*train(lambda g: torch.optim.Adam(g, fused=True, **kw), p0, grads))
    assert_bitwise(ours, per_tensor(p0, grads, lambda i: kernel_hyper(kw)))
    assert_matches_torch(ours, theirs, p0, grads, lambda i: kernel_hyper(kw))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_adamw_and_groups_with_their_own_options(dtype):
    groups = [dict(lr=3e-3), dict(lr=1e-2, weight_decay=0.5, amsgrad=True),
              dict(betas=(0.5, 0.9), eps=1e-6, maximize=True)]
    p0, grads = problem(2, SIZES, 10, dtype)
    ours_params, ours_opt = train(lambda g: optim.AdamW(g), p0, grads, groups)
    theirs = arrays(*train(lambda g: torch.optim.AdamW(g, fused=True), p0, grads, groups))
    ours = arrays(ours_params, ours_opt)
    per = -(-len(SIZES) // len(groups))

    def hyper_of(i):
        group = groups[i // per]
        return kernel_hyper(dict(group, weight_decay=group.get("weight_decay", 1e-2),
                                 decoupled_weight_decay=True))
    assert_bitwise(ours, per_tensor(p0, grads, hyper_of))
    assert_matches_torch(ours, theirs, p0, grads, hyper_of)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_adamax_equals_the_kernel_and_torch_for_loop(dtype):
    kw = dict(lr=2e-2, weight_decay=0.1 if dtype == torch.float32 else 0.0, maximize=True)
    p0, grads = problem(3, SIZES, 10, dtype, none=0.1)
    ours = arrays(*train(lambda g: optim.Adamax(g, **kw), p0, grads))
    theirs = arrays(*train(lambda g: torch.optim.Adamax(g, foreach=False, **kw), p0, grads))
    hyper = dict(kw, beta1=0.9, beta2=0.999, eps=1e-8)
    assert_bitwise(ours, per_tensor(p0, grads, lambda i: hyper, adamax=True))
    assert_matches_torch(ours, theirs, p0, grads, lambda i: hyper, adamax=True)


def test_many_steps_stay_bitwise():
    kw = dict(lr=1e-2, amsgrad=True, weight_decay=0.1)
    p0, grads = problem(4, [16 + 7, 1000 + 3], 300, torch.float32)
    ours = arrays(*train(lambda g: optim.Adam(g, **kw), p0, grads))
    assert_bitwise(ours, per_tensor(p0, grads, lambda i: kernel_hyper(kw)))
    theirs = arrays(*train(lambda g: torch.optim.Adam(g, fused=True, **kw), p0, grads))
    assert_matches_torch(ours, theirs, p0, grads, lambda i: kernel_hyper(kw))


def test_matches_torch_within_ulps_on_any_build():
    """The bound that holds on every build (the bitwise tests above say more on x86)."""
    kw = dict(lr=1e-2, weight_decay=0.1)
    p0, grads = problem(5, SIZES, 10, torch.float32)
    ours = arrays(*train(lambda g: optim.Adam(g, **kw), p0, grads))
    theirs = arrays(*train(lambda g: torch.optim.Adam(g, fused=True, **kw), p0, grads))
    hyper = kernel_hyper(kw)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        g_i = np.stack([gs[i] for gs in grads])
        a, b = {k: a[k] for k in "pmv"}, {k: b[k] for k in "pmv"}
        assert_close_in_ulps(a, b, shadow_scales(p0[i], g_i, hyper), 4 * len(grads) + 8,
                             np.float32)


@pytest.mark.parametrize("scheduler", ["exponential", "one-cycle"])
def test_lr_schedulers_drive_it_like_torch(scheduler):
    """ExponentialLR sets lr; OneCycleLR sets lr and the group's betas[0] every step."""
    p0, grads = problem(6, [100, 1000 + 5], 15, torch.float32)

    def make(cls, **kind):
        def build(groups):
            opt = cls(groups, lr=1e-2, **kind)
            build.sched = (torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8)
                           if scheduler == "exponential" else
                           torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=20))
            return opt
        return build

    results = []
    for cls, kind in ((optim.Adam, {}), (torch.optim.Adam, dict(fused=True))):
        build = make(cls, **kind)
        params, opt = train(build, p0, grads, on_step=lambda t: build.sched.step())
        results.append((arrays(params, opt), opt.param_groups[0]["lr"]))
    (ours, lr_ours), (theirs, lr_theirs) = results
    assert lr_ours == lr_theirs
    assert_matches_torch(ours, theirs)


def test_tensor_lr_is_read_each_step_like_a_float():
    """A Tensor lr means its value (float32 here, as torch fused reads it with ``item()``)."""
    p0, grads = problem(7, [50, 9], 5, torch.float32)
    ours = arrays(*train(lambda g: optim.Adam(g, lr=torch.tensor(0.01)), p0, grads))
    floats = arrays(*train(lambda g: optim.Adam(g, lr=float(torch.tensor(0.01))), p0, grads))
    assert_bitwise(ours, floats)
    theirs = arrays(*train(lambda g: torch.optim.Adam(g, lr=torch.tensor(0.01), fused=True),
                           p0, grads))
    assert_matches_torch(ours, theirs, p0, grads,
                         lambda i: kernel_hyper(dict(lr=float(torch.tensor(0.01)))))


def test_thread_count_does_not_change_results():
    p0, grads = problem(8, SIZES, 4, torch.float32)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = arrays(*train(lambda g: optim.Adam(g), p0, grads))
    finally:
        numba.set_num_threads(threads)
    assert_bitwise(one, arrays(*train(lambda g: optim.Adam(g), p0, grads)))


def test_table_follows_new_parameter_memory_and_new_groups():
    """``p.data = ...`` (as ``module.to`` does) and ``add_param_group`` mid-run."""
    p0, grads = problem(9, [30, 1000, 17], 6, torch.float32)

    def surgery(params, opt, t):
        if t == 1:
            params[0].data = params[0].data.clone()
        if t == 3:
            extra = torch.nn.Parameter(torch.ones(5))
            opt.add_param_group({"params": [extra], "lr": 0.1})

    results = []
    for make in (lambda g: optim.Adam(g), lambda g: torch.optim.Adam(g, fused=True)):
        params = [torch.nn.Parameter(torch.tensor(p)) for p in p0]
        opt = make([{"params": params}])
        for t, gs in enumerate(grads):
            for p, g in zip(params, gs):
                p.grad = torch.tensor(g)
            if len(opt.param_groups) > 1:
                opt.param_groups[1]["params"][0].grad = torch.full((5,), 0.5)
            opt.step()
            surgery(params, opt, t)
        results.append(arrays(params + opt.param_groups[1]["params"], opt))
    assert_matches_torch(*results)


def test_every_kind_of_gradient_a_built_table_meets_steps_like_the_kernel():
    """After the first step has built the tables, gradients that are transposed (not
    contiguous), empty, None or new tensors; each parameter equals ``adam_step`` on
    its own (with its own step count) bit for bit.  The empty parameter has a group
    of its own, so that the first group's step 2 meets the transposed gradient alone."""
    rng = np.random.default_rng(11)
    shapes = [(5, 4), (7,), (33,), (0,), (3,)]
    p0 = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    g = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(5)]
    none = {1: {1, 4}, 3: {3}}                      # step: the parameters without gradient
    grads = [[None if i in none.get(t, ()) else x for i, x in enumerate(gs)]
             for t, gs in enumerate(g)]
    params = [torch.nn.Parameter(torch.tensor(p)) for p in p0]
    opt = optim.Adam([{"params": params[:3]}, {"params": params[3:]}], lr=0.01)
    for t, gs in enumerate(grads):
        for p, x in zip(params, gs):
            p.grad = None if x is None else torch.tensor(x)
        if t == 2:                                   # the same values, transposed in memory
            params[0].grad = torch.tensor(gs[0].T.copy()).t()
            assert not params[0].grad.is_contiguous()
        opt.step()
    flat = [[None if x is None else x.reshape(-1) for x in gs] for gs in grads]
    expected = per_tensor([p.reshape(-1) for p in p0], flat,
                          lambda i: kernel_hyper({"lr": 0.01}))
    got = arrays(params, opt)
    for a in got:
        a.update({k: x.reshape(-1) for k, x in a.items() if k != "step"})
    assert [a["step"] for a in got] == [5.0, 4.0, 5.0, 4.0, 4.0]
    assert_bitwise(got, expected)


# ---------------------------------------------------------------- behaves like torch.optim
@pytest.mark.parametrize("ours,theirs", [(optim.Adam, torch.optim.Adam),
                                         (optim.AdamW, torch.optim.AdamW),
                                         (optim.Adamax, torch.optim.Adamax)], ids=str)
def test_constructors_are_torchs(ours, theirs):
    """Same parameter names, kinds (positional, keyword-only) and defaults as torch 2.13."""
    def described(cls):
        return [(p.name, p.kind, p.default)
                for p in inspect.signature(cls.__init__).parameters.values()]
    assert described(ours) == described(theirs)


def test_closure_zero_grad_and_autograd_versions():
    model = torch.nn.Linear(3, 2)
    opt = optim.Adam(model.parameters())
    x = torch.randn(4, 3)

    def closure():
        opt.zero_grad()
        loss = model(x).square().sum()
        loss.backward()
        return loss

    version = model.weight._version
    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and model.weight._version > version
    opt.zero_grad()
    assert model.weight.grad is None                       # set_to_none=True by default
    loss.detach()
    closure()
    opt.zero_grad(set_to_none=False)
    assert torch.count_nonzero(model.weight.grad) == 0


def test_parameters_without_gradients_get_no_state_like_torch():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(4))
    opt = optim.Adam([a, b])
    a.grad = torch.ones(3)
    opt.step()
    assert set(opt.state_dict()["state"]) == {0}
    assert len(opt.state[b]) == 0 and torch.equal(b, torch.ones(4))
    b.grad = torch.ones(4)
    opt.step()
    assert float(opt.state[a]["step"]) == 2 and float(opt.state[b]["step"]) == 1


@pytest.mark.parametrize("ours_cls,torch_cls,kind", [
    (optim.Adam, torch.optim.Adam, dict(fused=True)),
    (optim.AdamW, torch.optim.AdamW, dict(fused=True)),
    (optim.Adamax, torch.optim.Adamax, dict(foreach=False)),
], ids=["Adam", "AdamW", "Adamax"])
def test_state_dict_layout_is_torchs(ours_cls, torch_cls, kind):
    sd = []
    for opt_cls, kw in ((ours_cls, {}), (torch_cls, kind)):
        p = torch.nn.Parameter(torch.ones(5))
        opt = opt_cls([p], weight_decay=0.1) if opt_cls is not torch_cls else opt_cls(
            [p], weight_decay=0.1, **kw)
        p.grad = torch.ones(5)
        opt.step()
        sd.append(opt.state_dict())
    ours, theirs = sd
    assert ours["param_groups"] == theirs["param_groups"]
    assert set(ours["state"][0]) == set(theirs["state"][0])
    for key, t in theirs["state"][0].items():
        assert ours["state"][0][key].dtype == t.dtype and ours["state"][0][key].shape == t.shape
        assert torch.equal(ours["state"][0][key], t), key


@pytest.mark.parametrize("amsgrad", [False, True])
def test_state_dict_moves_between_ours_and_torch_mid_run_both_ways(amsgrad):
    kw = dict(lr=1e-2, amsgrad=amsgrad, weight_decay=0.1)
    p0, grads = problem(10, [1000 + 3, 16, 5], 8, torch.float32)

    def run(first, second):
        """``first`` for 4 steps, then ``second`` loads its state_dict and does 4 more."""
        params, opt = train(lambda g: first(g, **kw), p0, grads[:4])
        saved = copy.deepcopy(opt.state_dict())
        opt2 = second([{"params": params}], **kw)
        opt2.load_state_dict(saved)
        for gs in grads[4:]:
            for p, g in zip(params, gs):
                p.grad = torch.tensor(g)
            opt2.step()
        return arrays(params, opt2)

    def torch_fused(groups, **kw):
        return torch.optim.Adam(groups, fused=True, **kw)

    straight = arrays(*train(lambda g: optim.Adam(g, **kw), p0, grads))
    assert_bitwise(run(optim.Adam, optim.Adam), straight)
    hyper_of = lambda i: kernel_hyper(kw)                            # noqa: E731
    assert_matches_torch(run(optim.Adam, torch_fused), straight, p0, grads, hyper_of)
    assert_matches_torch(run(torch_fused, optim.Adam), straight, p0, grads, hyper_of)
    # torch's default (for-loop) optimizer's checkpoint loads too, and runs on from it
    mixed = run(lambda g, **kw: torch.optim.Adam(g, **kw), optim.Adam)
    assert [a["step"] for a in mixed] == [8.0] * 3


def test_state_survives_torch_save_and_weights_only_load():
    p0, grads = problem(11, [100, 7], 6, torch.float32)
    params, opt = train(lambda g: optim.Adam(g, amsgrad=True), p0, grads[:3])
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    assert loaded["state"][0]["step"].dtype == torch.float32
    assert loaded["state"][0]["step"].dim() == 0
    opt2 = optim.Adam([p.detach().clone().requires_grad_() for p in params], amsgrad=True)
    opt2.load_state_dict(loaded)
    params2 = opt2.param_groups[0]["params"]
    for gs in grads[3:]:
        for ps in (params, params2):
            for p, g in zip(ps, gs):
                p.grad = torch.tensor(g)
        opt.step()
        opt2.step()
    assert_bitwise(arrays(params2, opt2), arrays(params, opt))


def test_cuda_groups_go_to_the_multi_tensor_launch(monkeypatch):
    """The CUDA path's bookkeeping, on CPU tensors with a recording stand-in for the launch."""
    from adamref import cuda
    calls = []
    monkeypatch.setattr(cuda, "adam_step_multi_tensor",
                        lambda ps, gs, ms, vs, t, **kw: calls.append((len(ps), t, kw)))
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(4))
    opt = optim.Adam([a, b], lr=0.1, amsgrad=True)
    group = opt.param_groups[0]
    a.grad = torch.ones(3)
    opt._prepare_cuda(group, opt._hyper(group))()
    a.grad, b.grad = torch.ones(3), torch.ones(4)
    opt._prepare_cuda(group, opt._hyper(group))()
    assert [(n, t) for n, t, _ in calls] == [(1, 1), (1, 2), (1, 1)]
    assert calls[0][2]["amsgrad"] and calls[0][2]["v_maxs"] is not None
    assert calls[0][2]["lr"] == 0.1 and not calls[0][2]["decoupled"]
    assert float(opt.state[a]["step"]) == 2 and float(opt.state[b]["step"]) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_parameters_match_the_kernel_on_each_tensor():   # pragma: no cover
    from adamref import cuda
    p0, grads = problem(12, [1000 + 3, 16], 5, torch.float32)
    params = [torch.nn.Parameter(torch.tensor(p, device="cuda")) for p in p0]
    opt = optim.Adam(params, lr=1e-2, weight_decay=0.1)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = torch.tensor(g, device="cuda")
        opt.step()
    for i, p in enumerate(params):
        q, m, v = (torch.tensor(p0[i], device="cuda"), torch.zeros_like(p), torch.zeros_like(p))
        for t, gs in enumerate(grads, start=1):
            cuda.adam_step(q, torch.tensor(gs[i], device="cuda"), m, v, t, lr=1e-2,
                           weight_decay=0.1)
        assert torch.equal(q, p.detach())


# ---------------------------------------------------------------- bad input
def _snapshot(opt, params):
    return ([p.detach().clone() for p in params], copy.deepcopy(opt.state_dict()))


def _assert_unchanged(opt, params, snap):
    before_params, before_state = snap
    for p, q in zip(params, before_params):
        assert torch.equal(p.detach(), q)
    after = opt.state_dict()
    assert after["param_groups"] == before_state["param_groups"]
    assert set(after["state"]) == set(before_state["state"])
    for i, s in before_state["state"].items():
        for key, t in s.items():
            assert torch.equal(after["state"][i][key], t), (i, key)


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=-1.0), "Invalid learning rate: -1.0"),
    (dict(eps=-1e-8), "Invalid epsilon value"),
    (dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0"),
    (dict(betas=(0.9, -0.1)), "Invalid beta parameter at index 1"),
    (dict(weight_decay=-0.1), "Invalid weight_decay value"),
    (dict(betas=(0, 0.999)), "betas must be either both floats or both Tensors"),
    (dict(lr=torch.tensor([0.1, 0.2])), "Tensor lr must be 1-element"),
    (dict(foreach=True), "foreach"),
    (dict(fused=False), "fused=False"),
    (dict(capturable=True), "capturable"),
    (dict(differentiable=True), "differentiable"),
])
def test_bad_hyperparameters_raise_like_torch(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.Adam([torch.nn.Parameter(torch.ones(2))], **kwargs)


@pytest.mark.parametrize("params,match", [
    (lambda: [torch.ones(2, dtype=torch.complex64, requires_grad=True)], "complex"),
    (lambda: [torch.ones(2, dtype=torch.float16, requires_grad=True)], "float16"),
    (lambda: [torch.ones(2, requires_grad=True), torch.ones(2, dtype=torch.float64,
                                                            requires_grad=True)], "mixes dtypes"),
    (lambda: [torch.ones(2, requires_grad=True), torch.ones(2, device="meta",
                                                            requires_grad=True)], "meta"),
    (lambda: [torch.ones(3, 4).t().requires_grad_()], "contiguous"),
    (lambda: [torch.ones(2, requires_grad=True)] * 2, "twice"),
])
def test_bad_parameters_raise_at_construction(params, match):
    with pytest.raises(ValueError, match=match):
        optim.Adam(params())


def _two_groups_one_stepped():
    a, b = torch.nn.Parameter(torch.ones(20)), torch.nn.Parameter(torch.ones(9))
    opt = optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.1}], amsgrad=True)
    a.grad, b.grad = torch.full((20,), 0.5), torch.full((9,), -0.5)
    opt.step()
    return opt, [a, b]


def test_sparse_gradient_raises_before_anything_changes():
    opt, (a, b) = _two_groups_one_stepped()
    snap = _snapshot(opt, [a, b])
    a.grad = torch.ones(20)
    b.grad = torch.ones(9).to_sparse()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()
    _assert_unchanged(opt, [a, b], snap)


def test_amsgrad_switched_on_mid_run_raises_before_anything_changes():
    a = torch.nn.Parameter(torch.ones(20))
    opt = optim.Adam([a])
    a.grad = torch.ones(20)
    opt.step()
    opt.param_groups[0]["amsgrad"] = True
    snap = _snapshot(opt, [a])
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        opt.step()
    _assert_unchanged(opt, [a], snap)


def test_mismatched_state_raises_before_anything_changes():
    opt, (a, b) = _two_groups_one_stepped()
    opt.state[b]["exp_avg_sq"] = torch.zeros(3)
    opt._tables.clear()
    snap = _snapshot(opt, [a, b])
    a.grad, b.grad = torch.ones(20), torch.ones(9)
    with pytest.raises(ValueError, match="exp_avg_sq"):
        opt.step()
    _assert_unchanged(opt, [a, b], snap)


def test_parameter_memory_changed_to_another_dtype_raises_before_anything_changes():
    opt, (a, b) = _two_groups_one_stepped()
    b.data = b.data.double()
    snap = _snapshot(opt, [a, b])
    a.grad = torch.ones(20)
    with pytest.raises(ValueError, match="gradient of parameter 0"):
        opt.step()
    _assert_unchanged(opt, [a, b], snap)


def test_bad_param_group_is_refused_and_the_optimizer_unchanged():
    opt, (a, b) = _two_groups_one_stepped()
    snap = _snapshot(opt, [a, b])
    for group, match in (({"params": [torch.nn.Parameter(torch.ones(2))], "lr": -1}, "learning"),
                         ({"params": [torch.ones(2, dtype=torch.complex64,
                                                 requires_grad=True)]}, "complex")):
        with pytest.raises(ValueError, match=match):
            opt.add_param_group(group)
    assert len(opt.param_groups) == 2
    _assert_unchanged(opt, [a, b], snap)


# ---------------------------------------------------------------- a real model
@pytest.mark.skipif(CAPABILITY not in cpu.TORCH_BITWISE_BUILDS,
                    reason=f"bit-for-bit training equality with torch fused holds on torch's "
                           f"{'/'.join(cpu.TORCH_BITWISE_BUILDS)} builds; this is {CAPABILITY}")
@pytest.mark.parametrize("ours_cls,torch_cls", [(optim.Adam, torch.optim.Adam),
                                                (optim.AdamW, torch.optim.AdamW)],
                         ids=["Adam", "AdamW"])
def test_mlp_on_digits_trains_bit_for_bit_like_torch_fused(ours_cls, torch_cls):
    """A 64-32-10 MLP on scikit-learn's digits, 3 epochs of 64-sample batches."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    results = []
    for cls, kind in ((ours_cls, {}), (torch_cls, dict(fused=True))):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(),
                                    torch.nn.Linear(32, 10))
        opt = cls(model.parameters(), lr=3e-3, **kind)
        losses = []
        for _ in range(3):
            for i in range(0, len(x), 64):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
                loss.backward()
                opt.step()
                losses.append(loss.item())
        results.append((losses, list(model.parameters()), opt))
    (l1, p1, o1), (l2, p2, o2) = results
    assert l1 == l2 and l1[-1] < 0.5 * l1[0]
    assert_bitwise(arrays(p1, o1), arrays(p2, o2))


def test_step_runs_hooks_and_names_a_profiler_range_like_torch():
    """step() keeps torch.optim.Optimizer's wrapper contract: global and per-optimizer
    pre- and post-hooks in order, a pre-hook may replace the arguments, and under a
    profiler the step is a range named Optimizer.step#<class>.step."""
    from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                       register_optimizer_step_pre_hook)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    opt = optim.AdamW([p])
    calls = []
    handles = [register_optimizer_step_pre_hook(lambda o, a, k: calls.append("global pre")),
               opt.register_step_pre_hook(lambda o, a, k: calls.append("pre")),
               opt.register_step_post_hook(lambda o, a, k: calls.append("post")),
               register_optimizer_step_post_hook(lambda o, a, k: calls.append("global post"))]
    try:
        opt.step()
        assert calls == ["global pre", "pre", "post", "global post"]
        closure_calls = []
        handles.append(opt.register_step_pre_hook(
            lambda o, a, k: ((o,), {"closure": lambda: closure_calls.append(1) or 2.0})))
        assert opt.step() == 2.0 and closure_calls == [1]
    finally:
        for h in handles:
            h.remove()
    with torch.profiler.profile() as prof:
        opt.step()
    assert "Optimizer.step#AdamW.step" in [e.name for e in prof.events()]
