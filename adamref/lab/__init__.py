"""The book's laboratory: the problems, optimizers, plots and derivation helpers the
chapters use. It is not the public API and makes no compatibility promise; the
public API is :mod:`adamref.reference`, :mod:`adamref.cpu`, :mod:`adamref.cuda`
(the step functions) and the commands ``python -m adamref.bench``.

==========================  ====================================================
:mod:`~adamref.lab.problems`     the test problems the chapters share (bowls, the digits)
:mod:`~adamref.lab.optimizers`   SGD, momentum, AdaGrad, RMSProp, Adam as small classes
:mod:`~adamref.lab.ema`          the exponential moving average (chapter 2)
:mod:`~adamref.lab.moments`      expectations of the moments, the bias-correction ablation
                                 (chapter 4)
:mod:`~adamref.lab.conventions`  the other ways of writing Adam: efficient form, Keras's
                                 epsilon-hat (chapter 5)
:mod:`~adamref.lab.plotting`     contour plots and optimizer paths
:mod:`~adamref.lab.robust`       printing results that survive the last bit
:mod:`~adamref.lab.knobs`        sliders that redraw a figure in JupyterLab
==========================  ====================================================
"""
