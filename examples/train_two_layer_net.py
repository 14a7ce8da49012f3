"""Train the generated TwoLayerNet with backpropagation (the book's section 5.7.4).

The network class is generated from ``derivations/two_layer_net.toml``; the loop is the
book's: mini-batches of 100, plain SGD with learning rate 0.1, train and test accuracy
once per epoch.  Data: scikit-learn's bundled digits (``pip install ".[examples]"``), or
MNIST with ``--mnist DIR`` holding the four standard IDX files (gzip or not).  The loop,
the data, the progress bar and the curves are ``training.py``'s, beside this file.

    python examples/train_two_layer_net.py                 # digits, 64-50-10
    python examples/train_two_layer_net.py --mnist ~/mnist  # the book's 784-50-10
"""
from __future__ import annotations

import symbackprop
from training import SGD, Data, arguments, fit, run


def train(data: Data, epochs: int, hidden: int, batch: int, lr: float, seed: int) -> dict[str, list[float]]:
    """The generated TwoLayerNet (``D``-``hidden``-classes) trained by SGD; the history."""
    x_train, t_train, _, t_test = data
    classes = int(max(t_train.max(), t_test.max())) + 1
    Net = symbackprop.load("two_layer_net").compile()
    net = Net.initialized(D=x_train.shape[1], H=hidden, K=classes, seed=seed)
    return fit(net, data, epochs, batch, SGD(lr), seed)


def main(argv=None) -> int:
    parser = arguments(__doc__.splitlines()[0], png="two_layer_net_training.png", lr=0.1)
    parser.add_argument("--hidden", type=int, default=50)
    args = parser.parse_args(argv)
    epochs = args.epochs or (17 if args.mnist else 200)
    return run("train_two_layer_net", args, epochs,
               lambda data, n: train(data, n, args.hidden, args.batch, args.lr, args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
