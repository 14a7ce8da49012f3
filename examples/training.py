"""What the training examples share: the book's optimizers and mini-batch loop, the data
sets, a progress bar and the loss/accuracy curves.

``train_two_layer_net.py`` (the book's 5.7.4) and ``train_simple_conv_net.py`` (its 7.6)
import this module from beside them; it needs only numpy (matplotlib for the curves,
scikit-learn for the digits: ``pip install ".[examples]"``).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

from symbackprop.datasets import DataError, load_digits, load_mnist

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class SGD:
    """The book's stochastic gradient descent: ``W -= lr * dW``, in place (common/optimizer.py)."""

    def __init__(self, lr: float = 0.01):
        self.lr = lr

    def update(self, params: dict, grads: dict) -> None:
        for name, value in params.items():
            value -= self.lr * grads[name]  # in place: the network shares these arrays


class Adam:
    """The book's Adam (common/optimizer.py, the optimizer of its ``train_convnet.py``), in place."""

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter = 0
        self.m: dict | None = None
        self.v: dict | None = None

    def update(self, params: dict, grads: dict) -> None:
        if self.m is None:
            self.m = {k: np.zeros_like(v) for k, v in params.items()}
            self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        for name, value in params.items():
            self.m[name] += (1 - self.beta1) * (grads[name] - self.m[name])
            self.v[name] += (1 - self.beta2) * (grads[name] ** 2 - self.v[name])
            value -= lr_t * self.m[name] / (np.sqrt(self.v[name]) + 1e-7)


def progress(epoch: int, epochs: int, text: str, every: int, width: int = 24) -> None:
    """A progress bar redrawn in place on a terminal; a line every ``every`` epochs in a log."""
    done = int(width * epoch / epochs)
    line = f"[{'#' * done}{'.' * (width - done)}] epoch {epoch:3d}/{epochs}  {text}"
    if sys.stdout.isatty():
        print("\r" + line, end="\n" if epoch % every == 0 or epoch == epochs else "", flush=True)
    elif epoch % every == 0 or epoch == epochs:
        print(line, flush=True)


def fit(net, data: Data, epochs: int, batch: int, optimizer, seed: int) -> dict[str, list[float]]:
    """The book's loop: random mini-batches of ``batch`` (``len(train) // batch`` per epoch), an
    optimizer step on ``net.gradient``, the loss after each step, train and test accuracy once
    per epoch.  Returns the history: ``loss`` per iteration, ``train_acc`` and ``test_acc``."""
    x_train, t_train, x_test, t_test = data
    rng = np.random.default_rng(seed)
    per_epoch = max(len(x_train) // batch, 1)
    history: dict[str, list[float]] = {"loss": [], "train_acc": [], "test_acc": []}
    for epoch in range(1, epochs + 1):
        for _ in range(per_epoch):
            pick = rng.choice(len(x_train), batch)
            optimizer.update(net.params, net.gradient(x_train[pick], t_train[pick]))
            history["loss"].append(float(net.loss(x_train[pick], t_train[pick])))
        history["train_acc"].append(net.accuracy(x_train, t_train))
        history["test_acc"].append(net.accuracy(x_test, t_test))
        progress(epoch, epochs, f"loss {history['loss'][-1]:.4f}  train acc {history['train_acc'][-1]:.4f}  "
                                f"test acc {history['test_acc'][-1]:.4f}", every=max(epochs // 10, 1))
    return history


def plot(history: dict, path: str) -> None:
    """The loss per iteration and the accuracies per epoch, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(history["loss"], linewidth=0.8)
    left.set(xlabel="iteration", ylabel="loss", title="training loss")
    epochs = np.arange(1, len(history["train_acc"]) + 1)
    right.plot(epochs, history["train_acc"], label="train")
    right.plot(epochs, history["test_acc"], label="test", linestyle="--")
    right.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    right.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def arguments(description: str, png: str, lr: float | None) -> argparse.ArgumentParser:
    """The options both examples take (data, epochs, batch, learning rate, seed, curves);
    ``lr`` None: the example chooses by data set."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--mnist", metavar="DIR", help="folder with the MNIST IDX files (gzip or not)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the example's, digits or MNIST")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lr", type=float, default=lr, help=None if lr else "default: by data set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", "--png", dest="plot", metavar="FILE", default=png,
                        help="where to save the loss and accuracy curves (a PNG)")
    return parser


def run(program: str, args: argparse.Namespace, epochs: int,
        train: Callable[[Data, int], dict[str, list[float]]]) -> int:
    """Load the data (digits, or MNIST with ``--mnist``), train for ``epochs``, report the final
    test accuracy with wall and CPU time, save the curves.  Exit code 2 for unreadable data."""
    try:
        data = load_mnist(args.mnist) if args.mnist else load_digits(seed=args.seed)
    except DataError as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{'MNIST' if args.mnist else 'digits'}: {len(data[0])} training and {len(data[2])} test images "
          f"of {data[0].shape[1]} pixels")
    start, cpu = time.perf_counter(), time.process_time()
    history = train(data, epochs)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"final test accuracy {history['test_acc'][-1]:.4f} after {epochs} epochs in {seconds:.1f} s "
          f"(CPU {cpu:.1f} s)")
    plot(history, args.plot)
    print(f"curves saved to {args.plot}")
    return 0
