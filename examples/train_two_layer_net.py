"""Train the generated TwoLayerNet with backpropagation (the book's section 5.7.4).

The network class is generated from ``derivations/two_layer_net.toml``; the loop is the
book's: mini-batches of 100, plain SGD with learning rate 0.1, train and test accuracy
once per epoch.  Data: scikit-learn's bundled digits (``pip install ".[examples]"``), or
MNIST with ``--mnist DIR`` holding the four standard IDX files (gzip or not).

    python examples/train_two_layer_net.py                 # digits, 64-50-10
    python examples/train_two_layer_net.py --mnist ~/mnist  # the book's 784-50-10
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import symbackprop
from symbackprop.datasets import DataError, load_digits, load_mnist


def progress(epoch: int, epochs: int, text: str, every: int, width: int = 24) -> None:
    """A progress bar redrawn in place on a terminal; a line every ``every`` epochs in a log."""
    done = int(width * epoch / epochs)
    line = f"[{'#' * done}{'.' * (width - done)}] epoch {epoch:3d}/{epochs}  {text}"
    if sys.stdout.isatty():
        print("\r" + line, end="\n" if epoch % every == 0 or epoch == epochs else "", flush=True)
    elif epoch % every == 0 or epoch == epochs:
        print(line, flush=True)


def train(data, epochs: int, hidden: int, batch: int, lr: float, seed: int):
    x_train, t_train, x_test, t_test = data
    classes = int(max(t_train.max(), t_test.max())) + 1
    Net = symbackprop.load("two_layer_net").compile()
    net = Net.initialized(D=x_train.shape[1], H=hidden, K=classes, seed=seed)
    rng = np.random.default_rng(seed)
    per_epoch = max(len(x_train) // batch, 1)
    history = {"loss": [], "train_acc": [], "test_acc": []}
    for epoch in range(1, epochs + 1):
        for _ in range(per_epoch):
            pick = rng.choice(len(x_train), batch)
            grads = net.gradient(x_train[pick], t_train[pick])
            for name, value in net.params.items():
                value -= lr * grads[name]  # in place: the network shares these arrays
            history["loss"].append(net.loss(x_train[pick], t_train[pick]))
        history["train_acc"].append(net.accuracy(x_train, t_train))
        history["test_acc"].append(net.accuracy(x_test, t_test))
        progress(epoch, epochs, f"loss {history['loss'][-1]:.4f}  train acc {history['train_acc'][-1]:.4f}  "
                                f"test acc {history['test_acc'][-1]:.4f}", every=max(epochs // 10, 1))
    return history


def plot(history: dict, path: str) -> None:
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", metavar="DIR", help="folder with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=None, help="default: 200 for digits, 17 for MNIST")
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", default="two_layer_net_training.png", help="where to save the curves")
    args = parser.parse_args(argv)
    try:
        data = load_mnist(args.mnist) if args.mnist else load_digits(seed=args.seed)
    except DataError as exc:
        print(f"train_two_layer_net: error: {exc}", file=sys.stderr)
        return 2
    epochs = args.epochs or (17 if args.mnist else 200)
    print(f"{'MNIST' if args.mnist else 'digits'}: {len(data[0])} training and {len(data[2])} test images "
          f"of {data[0].shape[1]} pixels")
    start = time.perf_counter()
    history = train(data, epochs, args.hidden, args.batch, args.lr, args.seed)
    seconds = time.perf_counter() - start
    print(f"final test accuracy {history['test_acc'][-1]:.4f} after {epochs} epochs in {seconds:.1f} s")
    plot(history, args.png)
    print(f"curves saved to {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
