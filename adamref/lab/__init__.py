"""The book's laboratory: the problems, optimizers, plots and derivation helpers the
chapters use. It is not the public API and makes no compatibility promise; the
public API is :mod:`adamref.reference`, :mod:`adamref.cpu`, :mod:`adamref.cuda`
(the step functions), :mod:`adamref.optim` (the torch optimizers) and the commands
``python -m adamref.check`` and ``python -m adamref.bench``.

===============================  ======================================================
:mod:`~adamref.lab.problems`     the test problems the chapters share (bowls, the
                                 digits)
:mod:`~adamref.lab.optimizers`   SGD, momentum, AdaGrad, RMSProp, Adam as small classes
:mod:`~adamref.lab.ema`          the exponential moving average (ch-ema)
:mod:`~adamref.lab.moments`      expectations of the moments, the bias-correction
                                 ablation (ch-bias-correction)
:mod:`~adamref.lab.conventions`  Adam as others write it: the efficient form, Keras,
                                 optax, apex/DeepSpeed FusedAdam, the AdamW paper's
                                 decay; ulp distances (ch-adam, ch-disagree)
:mod:`~adamref.lab.online`       online convex optimisation: Reddi et al.'s
                                 counterexamples, projected Adam/AMSGrad, regret,
                                 Gamma_t (ch-convergence)
:mod:`~adamref.lab.decay`        weight decay inside Adam: L2 against decoupled decay,
                                 the (lr, weight_decay) grid (ch-adamw)
:mod:`~adamref.lab.lpnorm`       AdaMax's L^p average, its limit and its step bound
                                 (ch-adamax)
:mod:`~adamref.lab.nesterov`     Nesterov momentum, torch NAdam's mu_t schedule and
                                 step weights (ch-nadam)
:mod:`~adamref.lab.warmup`       RAdam's rho_t and r_t, the variance of the adaptive
                                 rate, a small MLP (ch-radam)
:mod:`~adamref.lab.schedules`    learning-rate schedules as functions of t, the noise
                                 floor that follows alpha_t (ch-schedules)
:mod:`~adamref.lab.averaging`    the bias-corrected average of the iterates, its noise
                                 floor (ch-averaging)
:mod:`~adamref.lab.sparse`       a Zipf embedding table, dense Adam's ghost drift,
                                 SparseAdam's lazy step (ch-sparse)
:mod:`~adamref.lab.experiments`  Part III's digits and bag-of-words data, training
                                 loops, fair learning-rate tuning over seeds
:mod:`~adamref.lab.cnn`          the small convolutional network of ch-cnn and its
                                 second-moment probes
:mod:`~adamref.lab.vae`          the variational autoencoder of ch-vae and the
                                 bias-correction sweep
:mod:`~adamref.lab.scale`        Adam's memory per rank under ZeRO and FSDP2, and
                                 two-process workers (ch-scale)
:mod:`~adamref.lab.plotting`     contour plots and optimizer paths
:mod:`~adamref.lab.robust`       printing results that survive the last bit
:mod:`~adamref.lab.knobs`        sliders that redraw a figure in JupyterLab
===============================  ======================================================
"""
