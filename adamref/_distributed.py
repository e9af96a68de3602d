"""What :mod:`adamref.optim` needs to step ``torch.distributed``'s sharded tensors.

Under FSDP2 (``torch.distributed.fsdp.fully_shard``) every parameter, its
gradient and the optimizer state made from it (``torch.zeros_like(p)``) are
``DTensor``s: a global shape, and on each rank a *local shard* holding that
rank's rows.  A ``DTensor`` has no storage of its own (its ``data_ptr()`` is
0), so the kernels must be handed the addresses of the local shards.  Adam is
elementwise, so stepping each rank's shards is the whole step: no gather, and
the same arithmetic on every element as one process stepping the full tensors.

:func:`local` turns a tensor into the one whose memory the kernels read and
write; :func:`shard` does that and checks that the shard lines up with the
parameter's (same local shape, contiguous), so that a gradient or a state laid
out differently from its parameter (another placement, another mesh) raises
instead of being read past its end.

The state stays as ``DTensor``s in ``optimizer.state``, exactly as
``torch.optim.Adam`` keeps it under FSDP2, so
``torch.distributed.checkpoint`` saves and loads it sharded and the
checkpoints move between torch's optimizers and ours.  The book's chapter
"Adam at scale" runs this on two processes.

ZeRO-1 (``torch.distributed.optim.ZeroRedundancyOptimizer``) needs nothing
here: each rank's optimizer gets ordinary tensors, whole parameters.
"""

from __future__ import annotations

import sys

__all__ = ["local", "is_sharded", "shard"]

_DTensor = None                          # the class, once it has been seen in sys.modules


def _dtensor_class():
    """``torch.distributed.tensor.DTensor`` if that module has been imported, else None.

    Importing it costs about 0.35 s (it pulls in ``torch._dynamo``), and no
    ``DTensor`` can exist before it is imported, so it is looked up, never
    imported; once found it is kept, so later calls cost one global read.
    """
    global _DTensor
    if _DTensor is None:
        _DTensor = getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)
    return _DTensor


def is_sharded(t) -> bool:
    """Whether ``t`` is a ``DTensor`` (its memory is a local shard)."""
    dtensor = _dtensor_class()
    return dtensor is not None and isinstance(t, dtensor)


def local(t):
    """The tensor whose memory holds ``t``'s elements on this rank: a ``DTensor``'s
    local shard, any other tensor itself (no copy in either case)."""
    if is_sharded(t):
        shard_ = getattr(t, "_local_tensor", None)      # no autograd node, unlike to_local()
        return shard_ if shard_ is not None else t.to_local()
    return t


def shard(t, like, what: str):
    """``local(t)``, checked to be contiguous and shaped like ``local(like)``.

    ``what`` names ``t`` in the error (e.g. ``"the gradient of parameter 3"``).
    Raises ``ValueError`` if ``t`` and ``like`` are not both sharded or both not,
    or if their local shards differ in shape (another placement or mesh).
    """
    if is_sharded(t) != is_sharded(like):
        raise ValueError(f"{what} is {'a' if is_sharded(t) else 'not a'} DTensor but its "
                         f"parameter is {'' if is_sharded(like) else 'not '}one")
    lt, lp = local(t), local(like)
    if lt.shape != lp.shape:
        raise ValueError(f"{what} has a local shard of shape {tuple(lt.shape)} on this "
                         f"rank, the parameter {tuple(lp.shape)} (placements "
                         f"{getattr(t, 'placements', None)} and "
                         f"{getattr(like, 'placements', None)})")
    if not lt.is_contiguous():
        raise ValueError(f"{what}: its local shard is not contiguous")
    return lt
