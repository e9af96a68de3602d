"""The paper's experiments at a size that runs here: data, training loops, fair tuning.

Part III of the book (chapters ``ch-logistic``, ``ch-mlp``, ``ch-cnn``,
``ch-vae``) reruns section 6 of Kingma & Ba (2015) on data that ships with
scikit-learn or is generated.  The pieces:

- :func:`digits`: scikit-learn's 8x8 digits (1,797 images, no download) as
  torch tensors, pixels scaled to [0, 1], with one fixed stratified
  train/test split (1,438 / 359).
- :func:`bag_of_words`: a generated corpus standing in for IMDB: words drawn
  with Zipf frequencies ``P(rank k) ∝ k^-s``, binary bag-of-words features,
  and a planted sparse linear sentiment rule with label noise.
- :func:`train`: one model, one optimizer, one seed: minibatch training with
  reshuffling every epoch; returns the full training loss, test loss and
  test accuracy after every epoch (:class:`Curves`).  Any ``nn.Module``.
- :func:`train_grid`: many runs at once for the models of chapters
  ``ch-logistic`` and ``ch-mlp`` (softmax regression and ReLU MLPs with
  dropout): every learning rate of a grid times every seed, trained together
  as one batched model.  The optimizers are elementwise, so each run gets
  exactly the update it would get alone (``tests/test_experiments.py``
  checks this against :func:`train`); a run's minibatch order, dropout masks
  and initial weights depend on its seed only, so two optimizers see the same
  noise (common random numbers: their difference is measured paired).
- :func:`tune` / :func:`tune_lr`: pick a learning rate from a grid by the
  mean score over seeds, and check that the grid *brackets* it: both ends
  of the grid score measurably worse than the best (by more than ``rtol``).
- :func:`mean_spread`, :func:`fmt_mean_spread`: mean and standard
  deviation over seeds, printed to a stated number of decimals.
- :class:`KerasStyleAdam`: ``keras.optimizers.Adam`` (epsilon-hat on the
  uncorrected ``sqrt(v)``, default ``1e-7``) on :class:`adamref.optim.Adam`,
  by setting Algorithm 1's epsilon to ``eps_hat / sqrt(1 - beta2^t)`` at step
  ``t`` (chapter ``ch-adam`` derives the equivalence).

The paper's learning-rate decay ``alpha_t = alpha / sqrt(t)`` is :func:`inv_sqrt`.

Call :func:`single_threaded` first in a notebook: these models are tiny, and
on a small machine the thread pools of torch and of Numba's ``parallel``
kernels (which :class:`adamref.optim.Adam` runs) spin against each other;
measured on 2 cores, one run of :func:`train_grid` with ``adamref.optim.Adam``
took 7 s of CPU with two threads each and 1.4 s with one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from adamref.lab.robust import choose, near_best
from adamref.optim import Adam as _AdamrefAdam

__all__ = ["softmax_minimum", "single_threaded", "Data", "digits", "bag_of_words", "Curves", "train", "run_seeds",
           "GridResult", "train_grid", "Tuned", "tune", "tune_lr", "inv_sqrt",
           "mean_spread", "fmt_mean_spread", "KerasStyleAdam", "mlp_init"]


def single_threaded() -> None:
    """One thread for torch and for Numba's parallel kernels (small models run faster)."""
    torch.set_num_threads(1)
    try:
        import numba
        numba.set_num_threads(1)
    except ImportError:                                  # pragma: no cover
        pass


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Data:
    """A classification data set as torch tensors: float features, int64 labels."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    classes: int

    @property
    def features(self) -> int:
        return self.X_train.shape[1]

    def head(self, fraction: float) -> "Data":
        """The first ``fraction`` of the training set (the test set unchanged).

        Keras's ``fit(validation_split=0.2)`` trains on the first 80% of the
        training arrays and holds out the last 20%: ``data.head(0.8)``.
        """
        n = int(len(self.X_train) * fraction)
        return Data(self.X_train[:n], self.y_train[:n], self.X_test, self.y_test,
                    self.classes)

    def to(self, dtype) -> "Data":
        return Data(self.X_train.to(dtype), self.y_train, self.X_test.to(dtype),
                    self.y_test, self.classes)


def _split(n: int, y: np.ndarray, test_fraction: float, seed: int):
    """A stratified random split: the same fraction of every class goes to the test set."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.extend(idx[:int(round(test_fraction * len(idx)))])
    test = np.sort(np.array(test))
    train = np.setdiff1d(np.arange(n), test)
    return rng.permutation(train), rng.permutation(test)


def digits(test_fraction: float = 0.2, split_seed: int = 0,
           dtype=torch.float32) -> Data:
    """scikit-learn's 8x8 digits, pixels in [0, 1], a fixed stratified split.

    1,797 images of 64 pixels (intensity 0..16, divided by 16), 10 classes;
    with the defaults 1,438 training and 359 test images (20% of each class).  For a CNN,
    ``X.reshape(-1, 1, 8, 8)`` gives the images.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    X = d.data / 16.0
    y = d.target.astype(np.int64)
    train, test = _split(len(y), y, test_fraction, split_seed)
    t = lambda a, dt: torch.tensor(a, dtype=dt)  # noqa: E731
    return Data(t(X[train], dtype), t(y[train], torch.int64),
                t(X[test], dtype), t(y[test], torch.int64), 10)


def bag_of_words(docs: int = 4000, vocabulary: int = 2000, length: int = 60,
                 zipf: float = 1.1, informative: int = 200, label_noise: float = 0.1,
                 test_fraction: float = 0.2, seed: int = 0,
                 dtype=torch.float32, return_rule: bool = False):
    """A generated sentiment corpus with Zipf word frequencies and a planted sparse rule.

    Each document draws ``length`` words independently, word ``k`` (rank
    ``k = 1..vocabulary``) with probability ``∝ k^-zipf``.  Its features are
    binary: ``x_j = 1`` if word ``j`` occurs in the document (bag of words).
    ``informative`` words, chosen uniformly at random among all ranks (so
    most of them are rare), carry a sentiment weight ``w*_j = ±1``; the
    label is ``1`` if ``x · w* > median`` over the corpus, then flipped with
    probability ``label_noise``.  Returns :class:`Data` with 2 classes (and,
    with ``return_rule=True``, also ``(w_star, frequency)``: the planted
    weights and each word's probability per draw).
    """
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, vocabulary + 1)
    p = ranks ** -float(zipf)
    p /= p.sum()
    words = rng.choice(vocabulary, size=(docs, length), p=p)
    X = np.zeros((docs, vocabulary))
    np.put_along_axis(X, words, 1.0, axis=1)
    w_star = np.zeros(vocabulary)
    chosen = rng.choice(vocabulary, size=informative, replace=False)
    w_star[chosen] = rng.choice([-1.0, 1.0], size=informative)
    score = X @ w_star
    y = (score > np.median(score)).astype(np.int64)
    flip = rng.random(docs) < label_noise
    y = np.where(flip, 1 - y, y)
    train, test = _split(docs, y, test_fraction, seed)
    t = lambda a, dt: torch.tensor(a, dtype=dt)  # noqa: E731
    data = Data(t(X[train], dtype), t(y[train], torch.int64),
                t(X[test], dtype), t(y[test], torch.int64), 2)
    return (data, (w_star, p)) if return_rule else data


# ------------------------------------------------------------------ one model
@dataclass
class Curves:
    """One run's curves: index 0 is before training, index ``e`` after epoch ``e``.

    ``train_loss``: mean cross-entropy over the whole training set (no
    dropout); ``test_loss``, ``test_acc``: on the test set.  A diverged run
    (a non-finite loss) has ``inf`` losses and ``nan`` accuracy from then on.
    """

    train_loss: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray

    @property
    def diverged(self) -> bool:
        return not math.isfinite(float(self.train_loss[-1]))


def inv_sqrt(t: int) -> float:
    """The paper's decay for logistic regression: ``alpha_t = alpha / sqrt(t)`` (``t >= 1``)."""
    return 1.0 / math.sqrt(t)


def _generator(seed: int, stream: int) -> torch.Generator:
    """An independent torch generator for (seed, stream): 0 init, 1 data order, 2 dropout."""
    state = np.random.SeedSequence([int(seed), stream]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def _permutations(n: int, epochs: int, gen: torch.Generator) -> list[torch.Tensor]:
    return [torch.randperm(n, generator=gen) for _ in range(epochs)]


def _scheduler(optimizer, lr_factor):
    if lr_factor is None:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: lr_factor(k + 1))


def _ce(logits, y):
    return F.cross_entropy(logits, y)


def train(model_fn: Callable[[], torch.nn.Module], optimizer_fn, data: Data,
          epochs: int, batch_size: int, seed: int, *,
          loss_fn: Callable | None = None, lr_factor: Callable[[int], float] | None = None,
          accuracy: bool = True, diverged_above: float = 1e6) -> Curves:
    """Train ``model_fn()`` with ``optimizer_fn(model.parameters())``; curves per epoch.

    ``torch.manual_seed(seed)`` is set before ``model_fn()`` (so the model's
    initial weights and its dropout masks depend on ``seed``); the minibatch
    order is drawn from a generator of its own, seeded by ``seed`` too: each
    epoch visits the training set in a new random order, in batches of
    ``batch_size`` (the last one may be smaller).  ``loss_fn(model, X, y)``
    is the minibatch loss (default: cross-entropy of ``model(X)``);
    ``lr_factor(t)`` multiplies every group's learning rate at step ``t``
    (``t = 1, 2, ...``; :func:`inv_sqrt` is the paper's decay), through
    ``torch.optim.lr_scheduler.LambdaLR``.  With ``accuracy=False`` (a model
    that does not output class scores) ``test_acc`` is ``nan``.  Training
    stops at the first non-finite minibatch loss or one above
    ``diverged_above``.
    """
    torch.manual_seed(seed)
    model = model_fn()
    optimizer = optimizer_fn(model.parameters())
    scheduler = _scheduler(optimizer, lr_factor)
    loss_fn = loss_fn or (lambda mdl, X, y: _ce(mdl(X), y))
    gen = _generator(seed, 1)
    n = len(data.X_train)
    tl, vl, va = [], [], []

    def evaluate():
        model.eval()
        with torch.no_grad():
            tl.append(float(loss_fn(model, data.X_train, data.y_train)))
            vl.append(float(loss_fn(model, data.X_test, data.y_test)))
            if accuracy:
                pred = model(data.X_test).argmax(-1)
                va.append(float((pred == data.y_test).double().mean()))
            else:
                va.append(math.nan)
        model.train()

    evaluate()
    diverged = False
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model, data.X_train[idx], data.y_train[idx])
            value = float(loss.detach())
            if not math.isfinite(value) or value > diverged_above:
                diverged = True
                break
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        if diverged:
            break
        evaluate()
    if diverged or not math.isfinite(tl[-1]):
        missing = epochs + 1 - len(tl)
        tl += [math.inf] * missing
        vl += [math.inf] * missing
        va += [math.nan] * missing
        tl[-1], vl[-1], va[-1] = math.inf, math.inf, math.nan
    return Curves(np.array(tl), np.array(vl), np.array(va))


def run_seeds(model_fn, optimizer_fn, data: Data, seeds: Sequence[int], **kwargs
              ) -> list[Curves]:
    """:func:`train` once per seed (same arguments otherwise)."""
    return [train(model_fn, optimizer_fn, data, seed=s, **kwargs) for s in seeds]


# ------------------------------------------------------- many runs at once
def mlp_init(sizes: Sequence[int], seed: int, init: str = "torch",
             dtype=torch.float32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Initial ``(W, b)`` per layer of an MLP with layer widths ``sizes``, from ``seed``.

    ``W`` has shape ``(in, out)`` (so a layer computes ``x @ W + b``).
    ``init="torch"``: ``nn.Linear``'s default, ``W`` and ``b`` uniform in
    ``±1/sqrt(in)``; ``init="glorot"``: Keras's ``Dense`` default, ``W``
    uniform in ``±sqrt(6 / (in + out))`` and ``b = 0``.
    """
    gen = _generator(seed, 0)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        u = lambda *shape: 2 * torch.rand(*shape, generator=gen, dtype=dtype) - 1  # noqa
        if init == "torch":
            bound = 1 / math.sqrt(fan_in)
            layers.append((bound * u(fan_in, fan_out), bound * u(fan_out)))
        elif init == "glorot":
            bound = math.sqrt(6 / (fan_in + fan_out))
            layers.append((bound * u(fan_in, fan_out), torch.zeros(fan_out, dtype=dtype)))
        else:
            raise ValueError(f"init must be 'torch' or 'glorot', got {init!r}")
    return layers


@dataclass
class GridResult:
    """Curves of every (learning rate, seed) run of :func:`train_grid`.

    Arrays have shape ``(len(lrs), len(seeds), epochs + 1)``; index ``[i, j, e]``
    is learning rate ``lrs[i]``, seed ``seeds[j]``, after epoch ``e``.
    """

    name: str
    lrs: np.ndarray
    seeds: tuple
    train_loss: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    params: list | None = None     # [(W, b) per layer], shapes (lrs, seeds, in, out), (lrs, seeds, out)

    @property
    def diverged(self) -> np.ndarray:
        """``(len(lrs), len(seeds))``: True where the run ended non-finite."""
        return ~np.isfinite(self.train_loss[:, :, -1])

    def at(self, lr: float) -> "GridResult":
        """The runs of one learning rate (which must be in the grid)."""
        i = int(np.flatnonzero(np.isclose(self.lrs, lr, rtol=1e-12, atol=0))[0])
        params = None if self.params is None else [
            (W[i:i + 1], b[i:i + 1]) for W, b in self.params]
        return GridResult(self.name, self.lrs[i:i + 1], self.seeds,
                          self.train_loss[i:i + 1], self.test_loss[i:i + 1],
                          self.test_acc[i:i + 1], params)


def _dropout_mask(shape, p: float, gen: torch.Generator, dtype) -> torch.Tensor:
    """Inverted dropout: keep with probability ``1 - p``, scaled by ``1 / (1 - p)``."""
    keep = torch.rand(shape, generator=gen, dtype=dtype) >= p
    return keep.to(dtype) / (1 - p)


def train_grid(data: Data, optimizer, lrs: Sequence[float], seeds: Sequence[int], *,
               hidden: Sequence[int] = (), dropout: float = 0.0,
               input_dropout: float = 0.0, epochs: int, batch_size: int,
               lr_factor: Callable[[int], float] | None = None,
               optimizer_kwargs: Mapping | None = None, init: str = "torch",
               name: str | None = None, diverged_above: float = 100.0,
               l2: float = 0.0, keep_params: bool = False) -> GridResult:
    """Train a ReLU MLP (``hidden=()``: softmax regression) for every lr x seed at once.

    The model is ``data.features -> hidden... -> data.classes`` with ReLU
    after every hidden layer, dropout ``dropout`` on every hidden layer's
    output and ``input_dropout`` on the input features (inverted dropout, as
    ``nn.Dropout``; off when evaluating), trained on the mean minibatch
    cross-entropy.  ``optimizer(param_groups, **optimizer_kwargs)`` builds the
    optimizer (a ``torch.optim`` class, or :class:`adamref.optim.Adam`); it
    gets one parameter group per learning rate, holding that rate's runs for
    every seed stacked along a first axis.  Every optimizer the book uses is
    elementwise, so stacking changes nothing: each run is updated as if alone.

    Each seed fixes its run's initial weights (:func:`mlp_init`), minibatch
    order and dropout masks, whatever the learning rate and the optimizer.
    ``lr_factor(t)`` multiplies the learning rates at step ``t``
    (``LambdaLR``).  ``l2 > 0`` adds ``l2/2 * ||theta||^2`` (every weight
    and bias) to each run's objective: its gradients and its reported
    ``train_loss`` include the penalty; ``test_loss`` is the cross-entropy
    alone.  A run whose training loss is not finite or exceeds
    ``diverged_above`` (cross-entropy at chance is ``ln classes``) after an
    epoch counts as diverged from then on: ``inf`` losses, ``nan``
    accuracy.  Returns a :class:`GridResult` (with the final weights as
    NumPy arrays in ``params`` if ``keep_params``).
    """
    lrs = np.asarray(lrs, dtype=float)
    seeds = tuple(int(s) for s in seeds)
    L, S = len(lrs), len(seeds)
    dtype = data.X_train.dtype
    sizes = [data.features, *hidden, data.classes]
    inits = [mlp_init(sizes, s, init, dtype) for s in seeds]
    groups, params = [], []
    for lr in lrs:
        layer_params = []
        for k in range(len(sizes) - 1):
            W = torch.stack([inits[j][k][0] for j in range(S)]).requires_grad_()
            b = torch.stack([inits[j][k][1] for j in range(S)]).requires_grad_()
            layer_params.append((W, b))
        params.append(layer_params)
        groups.append({"params": [t for wb in layer_params for t in wb], "lr": float(lr)})
    opt = optimizer(groups, **dict(optimizer_kwargs or {}))
    scheduler = _scheduler(opt, lr_factor)
    order_gens = [_generator(s, 1) for s in seeds]
    drop_gens = [_generator(s, 2) for s in seeds]
    n, nfeat, C = len(data.X_train), data.features, data.classes

    def stacked(k):
        W = torch.stack([params[i][k][0] for i in range(L)])       # (L, S, in, out)
        b = torch.stack([params[i][k][1] for i in range(L)])       # (L, S, out)
        return W, b

    def forward(x, masks=None):
        """x: (S, B, F) one batch per seed, or (N, F) shared; returns (L, S, B, C)."""
        W, b = stacked(0)
        fin, fout = W.shape[2], W.shape[3]
        if x.dim() == 2:                                        # shared input
            h = x @ W.permute(2, 0, 1, 3).reshape(fin, L * S * fout)
            h = h.view(-1, L, S, fout).permute(1, 2, 0, 3)
        else:                                                   # per-seed batches
            h = torch.bmm(x, W.permute(1, 2, 0, 3).reshape(S, fin, L * fout))
            h = h.view(S, -1, L, fout).permute(2, 0, 1, 3)
        h = h + b[:, :, None, :]
        for k in range(1, len(sizes) - 1):
            h = torch.relu(h)
            if masks is not None:
                h = h * masks[k][None]
            W, b = stacked(k)
            h = torch.matmul(h, W) + b[:, :, None, :]
        return h

    def penalty():
        """l2/2 ||theta||^2 per run, (L, S)."""
        total = 0.0
        for k in range(len(sizes) - 1):
            W, b = stacked(k)
            total = total + W.square().sum((2, 3)) + b.square().sum(2)
        return 0.5 * l2 * total

    def losses(logits, y):
        """Per-run mean cross-entropy, (L, S); y is (S, B) or (N,)."""
        Lr, Sr, B, _ = logits.shape
        yy = (y if y.dim() == 2 else y.expand(S, -1))
        yy = yy.expand(Lr, Sr, B).reshape(-1)
        ce = F.cross_entropy(logits.reshape(-1, C), yy, reduction="none")
        return ce.view(Lr, Sr, B).mean(-1)

    tl, vl, va = [], [], []

    def evaluate():
        with torch.no_grad():
            lt = losses(forward(data.X_train), data.y_train)
            if l2:
                lt = lt + penalty()
            logits = forward(data.X_test)
            lv = losses(logits, data.y_test)
            acc = (logits.argmax(-1) == data.y_test).to(torch.float64).mean(-1)
        lt, lv, acc = lt.double().numpy(), lv.double().numpy(), acc.numpy()
        bad = ~np.isfinite(lt) | ~np.isfinite(lv) | (lt > diverged_above)
        if tl:
            bad |= ~np.isfinite(tl[-1])
        tl.append(np.where(bad, np.inf, lt))
        vl.append(np.where(bad, np.inf, lv))
        va.append(np.where(bad, np.nan, acc))

    evaluate()
    for epoch in range(epochs):
        perms = [torch.randperm(n, generator=g) for g in order_gens]
        for i in range(0, n, batch_size):
            idx = torch.stack([p[i:i + batch_size] for p in perms])   # (S, B)
            x = data.X_train[idx]
            B = idx.shape[1]
            masks = None
            if input_dropout > 0:
                x = x * torch.stack([_dropout_mask((B, nfeat), input_dropout, g, dtype)
                                     for g in drop_gens])
            if dropout > 0 and len(hidden):
                masks = {k: torch.stack([_dropout_mask((B, sizes[k]), dropout, g, dtype)
                                         for g in drop_gens])
                         for k in range(1, len(sizes) - 1)}
            opt.zero_grad()
            loss = losses(forward(x, masks), data.y_train[idx])
            if l2:
                loss = loss + penalty()
            loss.sum().backward()    # each run's gradient is that of its own loss
            opt.step()
            if scheduler is not None:
                scheduler.step()
        evaluate()
    stack = lambda a: np.moveaxis(np.array(a), 0, -1)  # noqa: E731
    final = None
    if keep_params:
        final = [tuple(t.detach().numpy().copy() for t in stacked(k))
                 for k in range(len(sizes) - 1)]
    return GridResult(name or getattr(optimizer, "__name__", str(optimizer)), lrs, seeds,
                      stack(tl), stack(vl), stack(va), final)


def softmax_minimum(data: Data, l2: float) -> tuple[float, np.ndarray]:
    """The minimum ``F*`` of the L2-regularised softmax-regression objective, by L-BFGS.

    ``F(W, b) = mean cross-entropy of softmax(X W + b) on the training set
    + l2/2 (||W||^2 + ||b||^2)``, the objective :func:`train_grid` reports
    with ``hidden=()`` and this ``l2`` (chapter ``ch-logistic``).  It is
    strictly convex for ``l2 > 0``; ``scipy.optimize.minimize(method="L-BFGS-B")``
    in float64 finds ``F*`` to ~1e-10.  Returns ``(F*, theta*)`` with
    ``theta*`` of shape ``(features + 1, classes)`` (last row: the bias).
    """
    from scipy.optimize import minimize

    X = np.hstack([data.X_train.double().numpy(), np.ones((len(data.X_train), 1))])
    y = data.y_train.numpy()
    n, C = len(y), data.classes
    onehot = np.eye(C)[y]

    def f(theta):
        W = theta.reshape(-1, C)
        z = X @ W
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        value = -np.mean(logp[np.arange(n), y]) + 0.5 * l2 * theta @ theta
        grad = X.T @ (np.exp(logp) - onehot) / n + l2 * W
        return value, grad.ravel()

    res = minimize(f, np.zeros(X.shape[1] * C), jac=True, method="L-BFGS-B",
                   options=dict(maxiter=10000, gtol=1e-10, ftol=1e-15))
    return float(res.fun), res.x.reshape(-1, C)


# ---------------------------------------------------------------- tuning
@dataclass
class Tuned:
    """A learning rate chosen from a grid, and whether the grid brackets it.

    ``scores`` maps each lr to its mean score over seeds (``inf`` if any
    seed diverged when lower is better, ``nan`` for accuracy); ``lr`` is the
    smallest lr within ``rtol`` of the best score (:func:`adamref.lab.robust.choose`);
    ``bracketed`` is True when both ends of the grid score worse than the
    best by more than ``rtol`` (so the optimum lies inside the grid).
    """

    name: str
    lr: float
    index: int
    scores: dict
    rtol: float
    bracketed: bool
    near_best: list

    def __str__(self) -> str:
        return (f"{self.name}: lr = {self.lr:.3g} (grid {min(self.scores):.3g} .. "
                f"{max(self.scores):.3g}, {len(self.scores)} values, "
                f"{'bracketed' if self.bracketed else 'NOT bracketed'})")


def _score(value: np.ndarray, largest: bool) -> float:
    """Mean over seeds; a diverged seed makes the whole lr non-finite."""
    value = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(value)):
        return math.nan if largest else math.inf
    return float(value.mean())


def _select(name, lrs, per_lr: list, rtol: float, largest: bool, strict: bool) -> Tuned:
    scores = {float(lr): _score(v, largest) for lr, v in zip(lrs, per_lr)}
    tied = near_best(scores, rtol, largest=largest)
    if not tied:
        raise ValueError(f"{name}: every learning rate in the grid diverged")
    lr = choose(scores, rtol, largest=largest)
    keys = list(scores)
    bracketed = keys[0] not in tied and keys[-1] not in tied
    tuned = Tuned(name, lr, keys.index(lr), scores, rtol, bracketed, tied)
    if strict and not bracketed:
        edge = "smallest" if keys[0] in tied else "largest"
        raise ValueError(f"{name}: the {edge} lr of the grid is within {rtol:g} of the best"
                         f" score; widen the grid ({tuned})")
    return tuned


def tune(result: GridResult, score: str | Callable = "train_loss", *, rtol: float = 0.05,
         largest: bool | None = None, epoch: int = -1, strict: bool = True) -> Tuned:
    """Choose ``result``'s learning rate by the mean over seeds of ``score`` at ``epoch``.

    ``score``: ``"train_loss"`` (lower is better, the paper's criterion),
    ``"test_loss"``, ``"test_acc"`` (higher is better), or a function of
    ``(train_loss, test_loss, test_acc)`` arrays of shape ``(seeds,
    epochs + 1)`` returning one value per seed (then say ``largest``).  With
    ``strict`` (default), raises ``ValueError`` if the grid does not bracket
    the choice.
    """
    if callable(score):
        per_lr = [score(result.train_loss[i], result.test_loss[i], result.test_acc[i])
                  for i in range(len(result.lrs))]
        largest = bool(largest)
    else:
        arr = getattr(result, score)
        per_lr = [arr[i, :, epoch] for i in range(len(result.lrs))]
        largest = score.endswith("acc") if largest is None else largest
    return _select(result.name, result.lrs, per_lr, rtol, largest, strict)


def tune_lr(model_fn, optimizer_fn: Callable, data: Data, lrs: Sequence[float],
            seeds: Sequence[int], *, score: str = "train_loss", rtol: float = 0.05,
            strict: bool = True, name: str = "", **train_kwargs):
    """:func:`train` for every lr of a grid and seed; choose an lr as :func:`tune` does.

    ``optimizer_fn(params, lr)`` builds the optimizer.  Returns ``(tuned,
    runs)`` where ``runs[i]`` is the list of :class:`Curves` (one per seed)
    for ``lrs[i]``.  The budget is ``len(lrs) * len(seeds)`` runs.
    """
    runs = [run_seeds(model_fn, lambda p, lr=lr: optimizer_fn(p, lr), data, seeds,
                      **train_kwargs) for lr in lrs]
    largest = score.endswith("acc")
    per_lr = [np.array([getattr(c, score)[-1] for c in r]) for r in runs]
    return _select(name or "optimizer", np.asarray(lrs, float), per_lr, rtol, largest,
                   strict), runs


# ------------------------------------------------------------- summaries
def mean_spread(values) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value)."""
    v = np.asarray(values, dtype=float).ravel()
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fmt_mean_spread(values, decimals: int = 2, *, scale: float = 1.0,
                    unit: str = "") -> str:
    """``"mean ± sd"`` over seeds to ``decimals`` decimals (after multiplying by ``scale``).

    ``"diverged"`` if every value is non-finite, ``"diverged (k of n)"`` if
    some are.  Choose ``decimals`` so the spread, not the last bit, sets the
    last printed digit: ``fmt_mean_spread(acc, 0, scale=100, unit="%")``.

    >>> fmt_mean_spread([0.961, 0.967, 0.958], 1, scale=100, unit="%")
    '96.2 ± 0.5%'
    """
    v = np.asarray(values, dtype=float).ravel()
    ok = np.isfinite(v)
    if not ok.any():
        return "diverged"
    if not ok.all():
        return f"diverged ({int((~ok).sum())} of {len(v)})"
    m, s = mean_spread(v * scale)
    return f"{m:.{decimals}f} ± {s:.{decimals}f}{unit}"


# ------------------------------------------------------------- Keras's Adam
class KerasStyleAdam(_AdamrefAdam):
    """``keras.optimizers.Adam`` on :class:`adamref.optim.Adam`: epsilon-hat, default 1e-7.

    Keras adds ``epsilon`` to the *uncorrected* ``sqrt(v_t)`` and folds the
    bias corrections into the step size::

        p <- p - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m_t / (sqrt(v_t) + eps_hat)

    which is Algorithm 1 (``torch.optim.Adam``) with
    ``eps_t = eps_hat / sqrt(1 - beta2^t)``
    (:func:`adamref.lab.conventions.effective_eps`).  This class sets each
    group's ``eps`` to that value before every step.  ``eps`` here is Keras's
    ``epsilon`` (``eps_hat``); the other arguments are ``adamref.optim.Adam``'s.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-7, **kwargs):
        super().__init__(params, lr=lr, betas=betas, eps=eps, **kwargs)
        for group in self.param_groups:
            group["eps_hat"] = group["eps"]
        self._keras_t = 0

    @torch.no_grad()
    def step(self, closure=None):
        self._keras_t += 1
        for group in self.param_groups:
            eps_hat = group.setdefault("eps_hat", group["eps"])
            group["eps"] = eps_hat / math.sqrt(1 - group["betas"][1] ** self._keras_t)
        return super().step(closure)
