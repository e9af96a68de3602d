"""``torch.optim`` optimizers on adamref's kernels: ``Adam``, ``AdamW`` and ``Adamax``
(and ``NAdam``, ``RAdam`` on the NumPy reference; see their docstrings).

Drop-in replacements for ``torch.optim.Adam``, ``AdamW`` and ``Adamax`` (torch
2.13's constructors, defaults, validation, parameter groups and state_dict
layout), whose step is one call of a compiled multi-tensor kernel per
parameter group instead of PyTorch's kernels::

    import torch
    from adamref.optim import AdamW

    model = torch.nn.Linear(4, 1)
    opt = AdamW(model.parameters(), lr=1e-3)          # as torch.optim.AdamW
    loss = model(torch.randn(8, 4)).square().mean()
    loss.backward()
    opt.step()
    opt.zero_grad()

Each step of each parameter with a gradient is, with ``t`` its own step
count (``state["step"]``, counted up first) and ``g`` its gradient::

    g <- -g                    if maximize
    g <- g + wd p              L2 weight decay (Adam);   p <- (1 - lr wd) p  for AdamW
    m <- beta1 m + (1 - beta1) g                                   (Kingma & Ba, eq. 1)
    v <- beta2 v + (1 - beta2) g^2                                 (eq. 2)
    v_max <- max(v_max, v), used in place of v    if amsgrad
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

and for Adamax ``u <- max(beta2 u, |g| + eps)``, ``p <- p - lr / (1 - beta1^t)
* m / u``.  The math is :func:`adamref.cpu.adam_step` / ``adamax_step``;
this module holds none: it validates, keeps PyTorch's state, and hands the
addresses of every group's tensors to the kernels.

Numerics.  CPU float32 and float64 results are those of
:func:`adamref.cpu.adam_step` applied to each tensor, bit for bit, on every
build; on PyTorch's x86-64 AVX512 and AVX2 builds
(:data:`adamref.cpu.TORCH_BITWISE_BUILDS`) they also equal
``torch.optim.Adam(fused=True)`` / ``AdamW(fused=True)`` bit for bit
(``Adamax``: ``torch.optim.Adamax(foreach=False)``).  PyTorch's other builds
(ARM, ``ATEN_CPU_CAPABILITY=default``) round a few elements differently;
there the agreement is within a few ulps (see ``tests/test_optim.py``).  CUDA tensors are stepped by
:func:`adamref.cuda.adam_step_multi_tensor` (Adamax: ``adamref.cuda.adamax_step``
per tensor).

Speed.  The first step of a group validates its parameters and states once
and builds an int64 table of their addresses and sizes
(:class:`adamref.cpu.MultiTensorTable`), cut into one piece per thread across
the concatenated elements.  Later steps only gather each gradient's address
(autograd allocates new gradients after ``zero_grad(set_to_none=True)``) and
check that every parameter still has the memory the table points at; the
table is rebuilt when it does not, when parameters gain state, when the
group's parameter list or the thread count changes, and after
``load_state_dict`` or ``add_param_group``.  Replace state tensors only
through ``load_state_dict``: the table keeps the tensors it was built with.

State.  ``state[p]`` holds ``step`` (a float32 scalar tensor), ``exp_avg``,
``exp_avg_sq`` and, with AMSGrad, ``max_exp_avg_sq`` (Adamax: ``exp_avg``,
``exp_inf``; on the CPU in NumPy memory, for huge pages: :func:`_zeros_like`);
groups hold torch 2.13's keys, with ``fused=True`` for Adam and
AdamW (the step is a fused kernel, and a ``torch.optim.Adam`` that loads this
state_dict then runs its fused kernel too, so the two continue bit-identically).

References:
    Kingma, D. P. and Ba, J. (2015). Adam: A Method for Stochastic
    Optimization. ICLR. https://arxiv.org/abs/1412.6980 (Adamax: section 7.1).

    Loshchilov, I. and Hutter, F. (2019). Decoupled Weight Decay
    Regularization. ICLR. https://arxiv.org/abs/1711.05101
"""

from __future__ import annotations

import functools
import operator

import numba
import numpy as np
import torch
from torch.optim import Optimizer

from adamref import _distributed, cpu

__all__ = ["Adam", "AdamW", "Adamax", "NAdam", "RAdam"]

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}   # the dtypes stepped
_DTYPES = tuple(_NUMPY)
_GRAD = operator.attrgetter("grad")


# ---------------------------------------------------------------- validation
def _check_hyperparameters(lr, betas, eps, weight_decay, float_betas=True) -> None:
    """torch 2.13's checks and messages (``ValueError``), for the constructors and groups;
    ``float_betas``: Adam's rule that betas are both floats or both Tensors."""
    if isinstance(lr, torch.Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if float_betas and not (all(isinstance(b, float) for b in betas)
                            or all(isinstance(b, torch.Tensor) for b in betas)):
        raise ValueError("betas must be either both floats or both Tensors")
    for i, b in enumerate(betas):
        if isinstance(b, torch.Tensor) and b.numel() != 1:
            raise ValueError(f"Tensor betas[{i}] must be 1-element")


def _check_implementation(name, foreach, capturable, differentiable, fused) -> None:
    """torch's implementation switches: accepted where they describe what runs here."""
    if foreach:
        raise ValueError(f"adamref.optim.{name} does not use torch's foreach kernels "
                         f"(foreach=True); leave foreach at None or False")
    if fused is False:
        raise ValueError(f"adamref.optim.{name} always runs one fused kernel per group; "
                         f"fused=False is not available (use torch.optim.{name} for it)")
    if capturable:
        raise ValueError(f"adamref.optim.{name} does not support capturable=True (CUDA "
                         f"graph capture): its step reads the step counts on the host")
    if differentiable:
        raise ValueError(f"adamref.optim.{name} does not support differentiable=True: "
                         f"its kernels write in place outside autograd")


def _check_params(name, params) -> None:
    """Parameters the kernels can step: one float dtype and one device per group, real."""
    for i, p in enumerate(params):
        if torch.is_complex(p):
            raise ValueError(f"adamref.optim.{name}: parameter {i} is complex ({p.dtype}); "
                             f"only float32 and float64 parameters are supported")
        if p.dtype not in _DTYPES:
            raise ValueError(f"adamref.optim.{name}: parameter {i} is {p.dtype}; only "
                             f"float32 and float64 parameters are supported")
        if p.layout is not torch.strided:
            raise ValueError(f"adamref.optim.{name}: parameter {i} is not a dense tensor "
                             f"({p.layout})")
        if p.device.type not in ("cpu", "cuda"):
            raise ValueError(f"adamref.optim.{name}: parameter {i} is on {p.device}; "
                             f"only CPU and CUDA tensors are supported")
        if not p.is_contiguous():
            raise ValueError(f"adamref.optim.{name}: parameter {i} is not contiguous; "
                             f"the kernels need C-contiguous parameters")
        if p.dtype != params[0].dtype:
            raise ValueError(f"adamref.optim.{name}: a parameter group mixes dtypes "
                             f"({params[0].dtype} and {p.dtype}, parameter {i}); put each "
                             f"dtype in its own group")
        if p.device != params[0].device:
            raise ValueError(f"adamref.optim.{name}: a parameter group mixes devices "
                             f"({params[0].device} and {p.device}, parameter {i}); put each "
                             f"device in its own group")
    if len(set(params)) != len(params):
        raise ValueError(f"adamref.optim.{name}: a parameter appears twice in one group")


def _grad(name, p, params):
    """``p.grad``, checked: dense, and of ``p``'s dtype, shape and device."""
    g = p.grad
    if g.is_sparse:
        raise RuntimeError(f"{name} does not support sparse gradients, please consider "
                           f"SparseAdam instead")
    if g.dtype != p.dtype or g.shape != p.shape or g.device != p.device:
        i = next(i for i, q in enumerate(params) if q is p)
        raise ValueError(f"adamref.optim.{name}: the gradient of parameter {i} is "
                         f"{g.dtype} {tuple(g.shape)} on {g.device}, the parameter "
                         f"{p.dtype} {tuple(p.shape)} on {p.device}")
    return g


def _gradient_addresses(name, rows, params):
    """Each row's gradient address (0: no gradient; 1: one with no elements, which
    the kernel counts as a step but never reads), and the contiguous copies made of
    non-contiguous gradients, to keep alive until the kernel has run."""
    addresses, keep = [], []
    for p in rows:
        if p.grad is None:
            addresses.append(0)
            continue
        g = _grad(name, p, params)
        if _distributed.is_sharded(p) or _distributed.is_sharded(g):   # FSDP2: the local shard
            g = _distributed.shard(g, p, f"adamref.optim.{name}: the gradient of a parameter")
        if not g.is_contiguous():
            g = g.contiguous()
            keep.append(g)
        addresses.append(g.data_ptr() or 1)
    return addresses, keep


# ---------------------------------------------------------------- per-group plans
class _Table:
    """A group's multi-tensor table on the CPU and what it was built from."""

    __slots__ = ("params", "count", "keys", "rows", "stateless", "p_addresses", "state",
                 "n_state", "threads", "table", "written", "keep", "sharded")

    def __init__(self, opt, group):
        params = group["params"]
        self.params, self.count = params, len(params)
        self.state, self.n_state = opt.state, len(opt.state)
        self.threads = numba.get_num_threads()
        self.rows = [p for p in params if p in opt.state and opt.state[p]]
        self.stateless = [p for p in params if not (p in opt.state and opt.state[p])]
        local = _distributed.local                 # a DTensor's local shard, else the tensor
        self.p_addresses = [local(p).data_ptr() for p in self.rows]
        self.sharded = any(map(_distributed.is_sharded, self.rows))
        keys = self.keys = opt._state_keys(group)
        entries, self.written = [], []         # written: the parameters, for autograd's versions
        self.keep = []                         # the state tensors the table points into
        for p in self.rows:
            state = opt.state[p]
            tensors = [_state_tensor(state, key) for key in keys]
            step = _step_tensor(state)
            shards = [_distributed.shard(t, p, f"adamref.optim: state[{key!r}]")
                      for t, key in zip(tensors, keys)]
            entries.append((local(p).data_ptr(), *(t.data_ptr() for t in shards),
                            *([0] * (3 - len(tensors))), step.data_ptr(), local(p).numel()))
            self.keep += [*tensors, step]
            self.written.append(p)
        self.table = cpu.MultiTensorTable(entries, np.dtype(str(params[0].dtype)[6:]),
                                          self.threads) if self.rows else None

    def fresh(self, opt, group) -> bool:
        """Whether this table may still describe ``group`` (group-level checks; the
        parameters' addresses are compared in :meth:`gradients`)."""
        return (group["params"] is self.params and len(self.params) == self.count
                and opt._state_keys(group) == self.keys
                and opt.state is self.state and len(opt.state) == self.n_state
                and numba.get_num_threads() == self.threads
                and all(p.grad is None for p in self.stateless))

    def gradients(self):
        """Each row's gradient address (0: none), or None if a parameter's memory moved.

        The hot loop of a step.  A gradient's dtype, shape and device need no
        check here: PyTorch checks them against the parameter when ``.grad`` is
        set, and the parameter is the one the table was built (and checked)
        for, since its address has not changed.  The common case (every row
        has a plain, dense, contiguous gradient) is a few ``map`` passes, each
        a loop in C: about 0.2 us per tensor instead of 0.35 for a Python loop.
        Anything else (None, DTensor or sparse gradients) takes :meth:`_mixed`.
        """
        rows, tensor = self.rows, torch.Tensor
        if self.sharded or list(map(tensor.data_ptr, rows)) != self.p_addresses:
            return self._mixed()
        grads = list(map(_GRAD, rows))
        if set(map(type, grads)) != {tensor}:
            return self._mixed()
        try:                # a sparse gradient is not contiguous, or raises (as data_ptr)
            if all(map(tensor.is_contiguous, grads)):
                addresses = list(map(tensor.data_ptr, grads))
                if 0 not in addresses:                    # 0: a gradient with no elements
                    return addresses
        except RuntimeError:
            pass
        return self._mixed()

    def _mixed(self):
        """:meth:`gradients` one row at a time: None gradients (address 0), DTensors'
        local shards, empty gradients (address 1: counted as a step, never read);
        None (the checked path) for a moved parameter or a sparse or strided gradient."""
        addresses = []
        append = addresses.append
        strided, tensor = torch.strided, torch.Tensor
        local = _distributed.local if self.sharded else None   # FSDP2: DTensors' shards
        for p, address in zip(self.rows, self.p_addresses):
            if (local(p) if local else p).data_ptr() != address:
                return None
            g = p.grad
            if g is None:
                append(0)
                continue
            if local and type(g) is not tensor:             # a DTensor gradient: its shard
                g = local(g)
                if type(g) is not tensor or g.shape != local(p).shape:
                    return None                             # the checked path
            if g.layout is strided and g.is_contiguous():
                append(g.data_ptr() or 1)
            else:
                return None
        return addresses


def _zeros_like(p):
    """A zero state tensor shaped like ``p``, as ``torch.zeros_like(p)``.

    A plain CPU tensor's is NumPy's memory (``torch.from_numpy``, no copy).
    NumPy asks Linux for transparent huge pages (``madvise``) for arrays of
    4 MiB and more, where PyTorch's allocator does not, and the step streams
    its state through the TLB: on ResNet-50's and GPT-2's parameter lists
    the step ran 1-6% faster with the moments on huge pages (three
    interleaved A/B runs).  Such a tensor is a torch tensor in every respect
    but one: its storage cannot be resized (``resize_`` raises).  Anything
    else (CUDA, DTensors) is ``torch.zeros_like``'s.
    """
    if type(p) in (torch.Tensor, torch.nn.Parameter) and p.device.type == "cpu":
        return torch.from_numpy(np.zeros(tuple(p.shape), _NUMPY[p.dtype]))
    return torch.zeros_like(p, memory_format=torch.preserve_format)


def _check_state(name, state, keys, p) -> None:
    """A parameter's state has ``step`` and tensors ``keys`` of its dtype, shape, device."""
    for key in ("step", *keys):
        if key not in state:
            raise ValueError(f"adamref.optim.{name}: the state of a parameter has no "
                             f"{key!r} (was amsgrad switched on mid-run?)")
    for key in keys:
        t = state[key]
        if (not isinstance(t, torch.Tensor) or t.shape != p.shape or t.dtype != p.dtype
                or t.device != p.device):
            raise ValueError(f"adamref.optim.{name}: state[{key!r}] does not match its "
                             f"parameter ({p.dtype} {tuple(p.shape)} on {p.device})")


def _state_tensor(state, key):
    """``state[key]``, made contiguous if it is not (same values)."""
    t = state[key]
    if not t.is_contiguous():
        t = state[key] = t.contiguous()
    return t


def _step_tensor(state):
    """``state["step"]`` as a float32 CPU scalar tensor (converted if a checkpoint had
    another dtype or a Python number; the value is kept)."""
    step = state["step"]
    if not (isinstance(step, torch.Tensor) and step.dtype == torch.float32
            and step.device.type == "cpu" and step.dim() == 0):
        step = state["step"] = torch.tensor(float(step), dtype=torch.float32)
    return step


# ---------------------------------------------------------------- the step's wrapper
def _hooked_step(step):
    """``step`` with what ``torch.optim.Optimizer`` wraps every ``step`` in: the
    global and per-optimizer pre- and post-hooks (a pre-hook may replace the
    arguments) and a profiler range named ``Optimizer.step#<class>.step``.

    torch's own wrapper (``Optimizer.profile_hook_step``) opens that range even
    when no profiler is running, which costs about 10 us a step; here it is
    opened only under a profiler.  The attribute ``hooked`` tells
    ``Optimizer.__init__`` not to wrap ``step`` a second time.
    """
    from torch.autograd.profiler import record_function
    from torch.optim import optimizer as _torch_optimizer

    def hooks_and_step(self, args, kwargs):
        for pre_hook in (*_torch_optimizer._global_optimizer_pre_hooks.values(),
                         *self._optimizer_step_pre_hooks.values()):
            result = pre_hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(f"{step} must return None or a tuple of "
                                       f"(new_args, new_kwargs), but got {result}.")
                args, kwargs = result
        out = step(*args, **kwargs)
        self._optimizer_step_code()
        for post_hook in (*self._optimizer_step_post_hooks.values(),
                          *_torch_optimizer._global_optimizer_post_hooks.values()):
            post_hook(self, args, kwargs)
        return out

    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        self = args[0]
        if torch.autograd.profiler._is_profiler_enabled:
            with record_function(f"Optimizer.step#{type(self).__name__}.step"):
                return hooks_and_step(self, args, kwargs)
        return hooks_and_step(self, args, kwargs)

    wrapper.hooked = True
    return wrapper


# ---------------------------------------------------------------- optimizers
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) on adamref's kernels; ``torch.optim.Adam``'s interface.

    With ``t`` a parameter's step count, ``g`` its gradient (negated if
    ``maximize``; plus ``weight_decay * p``, or for
    ``decoupled_weight_decay=True`` first ``p <- (1 - lr weight_decay) p``)::

        m_t = beta1 m_{t-1} + (1 - beta1) g_t
        v_t = beta2 v_{t-1} + (1 - beta2) g_t^2        (amsgrad: v_t <- max(v_max, v_t))
        p_t = p_{t-1} - lr / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

    Arguments as ``torch.optim.Adam``.  ``foreach`` may be None or False,
    ``fused`` None or True (the step is always one fused kernel per group),
    ``capturable`` and ``differentiable`` False.  Parameters: float32 or
    float64, real, on the CPU (C-contiguous) or a CUDA device, one dtype and
    one device per group.  Sparse gradients raise.
    """

    _kind = "adam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        _check_hyperparameters(lr, betas, eps, weight_decay)
        _check_implementation(type(self).__name__, foreach, capturable, differentiable, fused)
        self._tables = {}
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize, foreach=None, capturable=False,
                        differentiable=False, fused=True,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    # torch.optim.Optimizer's bookkeeping, plus the tables
    def __setstate__(self, state):
        super().__setstate__(state)
        self._tables = {}
        for group in self.param_groups:
            self._normalise(group)

    def _normalise(self, group) -> None:
        """Keys an older or a torch checkpoint may lack, and the switches as they are here."""
        group.setdefault("amsgrad", False)
        group.setdefault("maximize", False)
        group.setdefault("decoupled_weight_decay", False)
        group.update(foreach=None, capturable=False, differentiable=False, fused=True)

    def add_param_group(self, param_group) -> None:
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else params
        if isinstance(params, (list, tuple)):
            tensors = [p[1] if isinstance(p, tuple) else p for p in params]
            if all(isinstance(p, torch.Tensor) for p in tensors):
                _check_params(type(self).__name__, tensors)
        options = {**self.defaults, **param_group}
        _check_hyperparameters(options["lr"], options["betas"], options["eps"],
                               options["weight_decay"], self._kind == "adam")
        _check_implementation(type(self).__name__, options.get("foreach"),
                              options.get("capturable"), options.get("differentiable"),
                              options.get("fused", True))
        super().add_param_group(param_group)
        self._normalise(self.param_groups[-1])
        self._tables = {}

    def load_state_dict(self, state_dict) -> None:
        for group in state_dict["param_groups"]:
            if group.get("differentiable"):
                raise ValueError(f"adamref.optim.{type(self).__name__}: the state_dict "
                                 f"has differentiable=True, which is not supported here")
        super().load_state_dict(state_dict)
        self._tables = {}

    # what a step needs
    def _state_keys(self, group) -> tuple:
        """The state tensors the kernel reads, in the table's column order (m, v, v_max)."""
        if group["amsgrad"]:
            return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
        return ("exp_avg", "exp_avg_sq")

    def _init_state(self, group, p) -> None:
        """torch's lazy state: a float32 step and zero moments shaped like ``p``."""
        state = self.state[p]
        state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        for key in self._state_keys(group):
            state[key] = _zeros_like(p)

    def _hyper(self, group) -> dict:
        """The group's options as the kernels take them (floats; a Tensor lr is read)."""
        beta1, beta2 = group["betas"]
        return dict(lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2),
                    eps=float(group["eps"]), weight_decay=float(group["weight_decay"]),
                    decoupled=bool(group["decoupled_weight_decay"]),
                    amsgrad=bool(group["amsgrad"]), maximize=bool(group["maximize"]))

    def _run_table(self, table, hyper) -> None:
        table.adam(**hyper)

    @_hooked_step
    @torch.no_grad()
    def step(self, closure=None):
        """One step for every parameter with a gradient; returns ``closure()``'s loss.

        Everything is checked (gradients, parameters, states) for every group
        before any tensor is written, so a bad gradient raises with nothing changed.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        runs = [self._prepare(i, group) for i, group in enumerate(self.param_groups)]
        for run in runs:
            if run is not None:
                run()
        return loss

    def _prepare(self, index, group):
        """Check one group and return what runs its step (None: nothing to do)."""
        params = group["params"]
        if not params:
            return None
        name = type(self).__name__
        hyper = self._hyper(group)
        if params[0].device.type == "cuda":
            return self._prepare_cuda(group, hyper)
        table = self._tables.get(index)
        if table is not None and table.fresh(self, group):
            if table.table is None:
                return None
            addresses = table.gradients()
            if addresses is not None:
                def run():
                    table.table.set_grads(addresses)
                    # autograd's versions first, while the tensors' metadata is still in
                    # cache from the gather (the kernel streams the whole state through
                    # it): about 15 us less for MobileNetV2's 158 tensors.  The kernel
                    # cannot fail, so no version counts a write that did not happen.
                    torch.autograd.graph.increment_version(table.written)
                    self._run_table(table.table, hyper)
                return run

        _check_params(name, params)                    # first step, or something changed:
        _gradient_addresses(name, params, params)      # check everything, then rebuild
        for p in params:
            if self.state.get(p):
                _check_state(name, self.state[p], self._state_keys(group), p)

        def run():
            for p in params:
                if p.grad is not None and not self.state.get(p):
                    self._init_state(group, p)
            self._tables[index] = built = _Table(self, group)
            if built.table is not None:
                addresses, keep = _gradient_addresses(name, built.rows, params)
                built.table.set_grads(addresses)
                self._run_table(built.table, hyper)
                torch.autograd.graph.increment_version(built.written)
                del keep                               # contiguous copies, read by the kernel
        return run

    def _prepare_cuda(self, group, hyper):
        """CUDA parameters: checked now; stepped by :mod:`adamref.cuda` in ``run``."""
        from adamref import cuda

        name = type(self).__name__
        params = group["params"]
        _check_params(name, params)
        with_grad = [(p, _grad(name, p, params)) for p in params if p.grad is not None]
        for p, _ in with_grad:
            if self.state.get(p):
                _check_state(name, self.state[p], self._state_keys(group), p)

        def run():
            by_step = {}
            for p, g in with_grad:
                if not self.state[p]:
                    self._init_state(group, p)
                state = self.state[p]
                t = int(float(state["step"])) + 1
                tensors = (g.contiguous(), *(state[k] for k in self._state_keys(group)))
                shards = [_distributed.shard(x, p, f"adamref.optim.{name}: a gradient or "
                                             f"state") for x in tensors]   # FSDP2: local
                by_step.setdefault(t, []).append((_distributed.local(p), *shards))
            for t, rows in by_step.items():
                self._run_cuda(cuda, [list(c) for c in zip(*rows)], t, hyper)
            for p, _ in with_grad:
                self.state[p]["step"] += 1
        return run

    def _run_cuda(self, cuda, columns, t, hyper) -> None:
        ps, gs, ms, vs, *v_maxs = columns
        cuda.adam_step_multi_tensor(ps, gs, ms, vs, t, **hyper,
                                    v_maxs=v_maxs[0] if v_maxs else None)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): :class:`Adam` with decoupled weight decay,
    ``p <- (1 - lr weight_decay) p`` before the Adam update, default ``weight_decay=1e-2``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def _normalise(self, group) -> None:
        super()._normalise(group)
        group["decoupled_weight_decay"] = True


class Adamax(Adam):
    """Adamax (Kingma & Ba 2015, section 7.1) on adamref's kernels; ``torch.optim.Adamax``'s
    interface and state (``step``, ``exp_avg``, ``exp_inf``)::

        m_t = beta1 m_{t-1} + (1 - beta1) g_t
        u_t = max(beta2 u_{t-1}, |g_t| + eps)
        p_t = p_{t-1} - lr / (1 - beta1^t) * m_t / u_t

    with ``g_t`` negated if ``maximize`` and plus ``weight_decay * p``.
    ``foreach`` may be None or False, ``capturable`` and ``differentiable``
    False.  Bit for bit ``torch.optim.Adamax(foreach=False)`` on the CPU.
    """

    _kind = "adamax"

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False, differentiable=False, capturable=False):
        _check_hyperparameters(lr, betas, eps, weight_decay, float_betas=False)
        _check_implementation("Adamax", foreach, capturable, differentiable, None)
        self._tables = {}
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        foreach=False, maximize=maximize, differentiable=False,
                        capturable=False)
        Optimizer.__init__(self, params, defaults)

    def _normalise(self, group) -> None:
        group.setdefault("maximize", False)
        group.update(foreach=False, capturable=False, differentiable=False)

    def _state_keys(self, group) -> tuple:
        return ("exp_avg", "exp_inf")

    def _hyper(self, group) -> dict:
        beta1, beta2 = group["betas"]
        return dict(lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2),
                    eps=float(group["eps"]), weight_decay=float(group["weight_decay"]),
                    maximize=bool(group["maximize"]))

    def _run_table(self, table, hyper) -> None:
        table.adamax(**hyper)

    def _run_cuda(self, cuda, columns, t, hyper) -> None:
        for p, g, m, u in zip(*columns):
            cuda.adamax_step(p, g, m, u, t, **hyper)


# ---------------------------------------------------------------- NAdam, RAdam
def _scalar_dtype():
    """torch's dtype for ``step`` and NAdam's ``mu_product``: float32 unless the default
    dtype is float64 (torch.optim.optimizer._get_scalar_dtype)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class _PerTensor(Optimizer):
    """NAdam and RAdam: torch's interface and state, stepped per tensor by the reference.

    First version: there is no compiled kernel for these yet, so each step
    calls :func:`adamref.reference.nadam_step` / ``radam_step`` once per
    parameter on zero-copy NumPy views of the tensors.  The Python cost of a
    step grows with the number of tensors (tens of microseconds each).
    """

    _torch_keys = ()            # state tensors besides step, exp_avg, exp_avg_sq

    def __init__(self, params, defaults):
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            self._normalise(group)
        for state in self.state.values():
            for key in ("step", *self._torch_keys):
                if key in state and not torch.is_tensor(state[key]):
                    state[key] = torch.tensor(float(state[key]), dtype=_scalar_dtype())

    def _normalise(self, group) -> None:
        group.setdefault("maximize", False)
        group.setdefault("decoupled_weight_decay", False)
        group.update(foreach=None, capturable=False, differentiable=False)

    def add_param_group(self, param_group) -> None:
        name = type(self).__name__
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else params
        if isinstance(params, (list, tuple)):
            tensors = [p[1] if isinstance(p, tuple) else p for p in params]
            if all(isinstance(p, torch.Tensor) for p in tensors):
                _check_params(name, tensors)
                for i, p in enumerate(tensors):
                    if p.device.type != "cpu":
                        raise ValueError(f"adamref.optim.{name}: parameter {i} is on "
                                         f"{p.device}; only CPU tensors are supported")
        options = {**self.defaults, **param_group}
        self._check_options(options)
        _check_implementation(name, options.get("foreach"), options.get("capturable"),
                              options.get("differentiable"), None)
        super().add_param_group(param_group)
        self._normalise(self.param_groups[-1])

    def _check_options(self, options) -> None:
        _check_hyperparameters(options["lr"], options["betas"], options["eps"],
                               options["weight_decay"], float_betas=False)

    def load_state_dict(self, state_dict) -> None:
        for group in state_dict["param_groups"]:
            if group.get("differentiable") or group.get("capturable"):
                raise ValueError(f"adamref.optim.{type(self).__name__}: the state_dict "
                                 f"has differentiable or capturable set, which is not "
                                 f"supported here")
        super().load_state_dict(state_dict)

    def _init_state(self, p) -> None:
        """torch's lazy state: scalar ``step`` (and ``mu_product``), zero moments."""
        state = self.state[p]
        state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        if "mu_product" in self._torch_keys:
            state["mu_product"] = torch.tensor(1.0, dtype=_scalar_dtype())
        state["exp_avg"] = _zeros_like(p)
        state["exp_avg_sq"] = _zeros_like(p)

    def _check_state(self, state, p) -> None:
        name = type(self).__name__
        _check_state(name, state, ("exp_avg", "exp_avg_sq"), p)
        for key in ("step", *self._torch_keys):
            s = state.get(key)
            if not (isinstance(s, torch.Tensor) and s.numel() == 1
                    and s.dtype in _DTYPES and s.device.type == "cpu"):
                raise ValueError(f"adamref.optim.{name}: state[{key!r}] must be a "
                                 f"one-element float32 or float64 CPU tensor")

    @torch.no_grad()
    def step(self, closure=None):
        """One step for every parameter with a gradient; returns ``closure()``'s loss.

        Every group's parameters, gradients and states are checked before any
        tensor is written.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        name = type(self).__name__
        work = []
        for group in self.param_groups:
            params = group["params"]
            _check_params(name, params)
            for p in params:
                if p.device.type != "cpu":
                    raise ValueError(f"adamref.optim.{name}: a parameter is on {p.device}; "
                                     f"only CPU tensors are supported")
                if p.grad is None:
                    continue
                g = _grad(name, p, params)
                if self.state.get(p):
                    self._check_state(self.state[p], p)
                work.append((group, p, g))
        hypers = {id(group): self._hyper(group) for group in self.param_groups}
        written = []
        for group, p, g in work:
            if not self.state.get(p):
                self._init_state(p)
            state = self.state[p]
            for key in ("exp_avg", "exp_avg_sq"):
                if not state[key].is_contiguous():
                    state[key] = state[key].contiguous()
            state["step"] += 1
            t = int(state["step"].item())
            self._step_one(p.detach().numpy(), g.detach().contiguous().numpy(), state, t,
                           hypers[id(group)])
            written.append(p)
        if written:
            torch.autograd.graph.increment_version(written)
        return loss


class NAdam(_PerTensor):
    """NAdam (Dozat 2016) with torch's momentum schedule; ``torch.optim.NAdam``'s interface.

    With ``t`` a parameter's step count, ``g`` its gradient (negated if
    ``maximize``; plus ``weight_decay * p``, or for
    ``decoupled_weight_decay=True`` first ``p <- (1 - lr weight_decay) p``)::

        mu_t = beta1 (1 - 0.5 * 0.96^(t * momentum_decay)),  Pi_t = mu_1 ... mu_t
        m_t  = beta1 m_{t-1} + (1 - beta1) g_t
        v_t  = beta2 v_{t-1} + (1 - beta2) g_t^2
        d_t  = sqrt(v_t / (1 - beta2^t)) + eps
        p_t  = p_{t-1} - lr [(1 - mu_t) / (1 - Pi_t) g_t
                             + mu_{t+1} / (1 - Pi_t mu_{t+1}) m_t] / d_t

    The math is :func:`adamref.reference.nadam_step`, called per tensor (no
    compiled kernel yet).  State: ``step``, ``mu_product`` (scalar tensors of
    torch's scalar dtype, float32 by default), ``exp_avg``, ``exp_avg_sq``, as
    torch stores them, so state_dicts load both ways.  Agrees with
    ``torch.optim.NAdam(foreach=False)`` within a few ulps (tests/test_nadam_radam.py).
    ``foreach`` may be None or False; ``capturable`` and ``differentiable``
    False.  Parameters: float32 or float64, real, contiguous, on the CPU.

    Reference: Dozat, T. (2016). Incorporating Nesterov Momentum into Adam.
    ICLR workshop. https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
    """

    _torch_keys = ("mu_product",)

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None,
                 maximize=False, capturable=False, differentiable=False):
        self._check_options(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                 momentum_decay=momentum_decay))
        _check_implementation("NAdam", foreach, capturable, differentiable, None)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                        foreach=None, capturable=False, differentiable=False)
        super().__init__(params, defaults)

    def _check_options(self, options) -> None:
        super()._check_options(options)
        if not 0.0 <= options["momentum_decay"]:
            raise ValueError(f"Invalid momentum_decay value: {options['momentum_decay']}")

    def _hyper(self, group) -> dict:
        beta1, beta2 = group["betas"]
        return dict(lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2),
                    eps=float(group["eps"]), weight_decay=float(group["weight_decay"]),
                    momentum_decay=float(group["momentum_decay"]),
                    decoupled=bool(group["decoupled_weight_decay"]),
                    maximize=bool(group["maximize"]))

    def _step_one(self, p, g, state, t, hyper) -> None:
        from adamref import reference
        reference.nadam_step(p, g, state["exp_avg"].numpy(), state["exp_avg_sq"].numpy(),
                             t, state["mu_product"].numpy(), **hyper)


class RAdam(_PerTensor):
    """RAdam (Liu et al. 2020); ``torch.optim.RAdam``'s interface and state.

    With ``t`` a parameter's step count and ``g`` its gradient (negated if
    ``maximize``; plus ``weight_decay * p``, or for
    ``decoupled_weight_decay=True`` first ``p <- (1 - lr weight_decay) p``)::

        m_t = beta1 m_{t-1} + (1 - beta1) g_t,    m_hat = m_t / (1 - beta1^t)
        v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        rho_inf = 2 / (1 - beta2) - 1,  rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        p_t = p_{t-1} - lr m_hat r_t sqrt(1 - beta2^t) / (sqrt(v_t) + eps)   if rho_t > 5
        p_t = p_{t-1} - lr m_hat                                             otherwise

    with ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``.
    The math is :func:`adamref.reference.radam_step`, called per tensor (no
    compiled kernel yet).  State: ``step``, ``exp_avg``, ``exp_avg_sq``, as
    torch stores them.  Agrees with ``torch.optim.RAdam(foreach=False)`` within
    a few ulps (tests/test_nadam_radam.py).  ``foreach`` may be None or False;
    ``capturable`` and ``differentiable`` False.  Parameters: float32 or
    float64, real, contiguous, on the CPU.

    Reference: Liu, L. et al. (2020). On the Variance of the Adaptive Learning
    Rate and Beyond. ICLR. https://arxiv.org/abs/1908.03265
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False,
                 capturable=False, differentiable=False):
        self._check_options(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        _check_implementation("RAdam", foreach, capturable, differentiable, None)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        maximize=maximize, foreach=None, capturable=False,
                        decoupled_weight_decay=decoupled_weight_decay, differentiable=False)
        super().__init__(params, defaults)

    def _hyper(self, group) -> dict:
        beta1, beta2 = group["betas"]
        return dict(lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2),
                    eps=float(group["eps"]), weight_decay=float(group["weight_decay"]),
                    decoupled=bool(group["decoupled_weight_decay"]),
                    maximize=bool(group["maximize"]))

    def _step_one(self, p, g, state, t, hyper) -> None:
        from adamref import reference
        reference.radam_step(p, g, state["exp_avg"].numpy(), state["exp_avg_sq"].numpy(),
                             t, **hyper)
