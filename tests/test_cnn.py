"""adamref.lab.cnn: the batched CNN grid equals one torch.nn network trained alone."""

import numpy as np
import torch
import torch.nn as nn

from adamref.lab import cnn
from adamref.lab.experiments import digits


def _alone(data, seed, lr, epochs, batch_size):
    # the same network from torch.nn layers, trained alone with torch.optim.SGD
    W1, b1, W2, b2, W3, b3 = cnn.init_cnn(seed, 4, 8, torch.float64)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(32, 10)).double()
    with torch.no_grad():
        net[0].weight.copy_(W1), net[0].bias.copy_(b1)
        net[3].weight.copy_(W2), net[3].bias.copy_(b2)
        # the grid flattens (channel, row, column) as nn.Flatten does
        net[7].weight.copy_(W3.T), net[7].bias.copy_(b3)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True)
    gen = cnn._generator(seed, 1)
    X = data.X_train.reshape(-1, 1, 8, 8)
    means = []
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=gen)
        total = 0.0
        for i in range(0, len(X), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(X[idx]), data.y_train[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        means.append(total / len(X))
    with torch.no_grad():
        acc = float((net(data.X_test.reshape(-1, 1, 8, 8)).argmax(-1)
                     == data.y_test).double().mean())
    return np.array(means), acc


def test_grid_runs_equal_single_networks():
    data = digits(dtype=torch.float64)
    lrs = [0.03, 0.1]
    grid = cnn.train_cnn_grid(
        data, {"SGD": (torch.optim.SGD, lrs, dict(momentum=0.9, nesterov=True)),
               "Adagrad": (torch.optim.Adagrad, [0.01], {})},
        seeds=[3, 4], epochs=2, batch_size=400, dropout=0.0, c1=4, c2=8)["SGD"]
    assert grid.train_loss.shape == (2, 2, 3)
    for i, lr in enumerate(lrs):
        for j, seed in enumerate([3, 4]):
            means, acc = _alone(data, seed, lr, 2, 400)
            np.testing.assert_allclose(grid.train_loss[i, j, 1:], means, rtol=1e-10)
            assert grid.test_acc[i, j, -1] == acc
