"""Train the generated SimpleConvNet with backpropagation (the book's section 7.5).

The network class is generated from ``derivations/simple_conv_net.toml``: convolution
(``--filters`` of ``--filter-size`` squared, stride 1, ``--pad``), ReLU, 2x2 max pooling,
affine (``--hidden``), ReLU, affine, softmax-with-loss, initialized as the book does.  The
loop is the book's ``train_convnet.py``: 20 epochs of mini-batches of 100, Adam, train and
test accuracy once per epoch.  Data: scikit-learn's bundled 8x8 digits (``pip install
".[examples]"``), or MNIST's 28x28 with ``--mnist DIR`` holding the four standard IDX files.
On MNIST everything is the book's (5x5 filters, pad 0, learning rate 0.001); the digits'
1438 images make only 14 steps an epoch, and 8x8 images only 2x2 pooled maps with 5x5
filters, so there the defaults are 3x3 filters with pad 1 (4x4 pooled maps) and a learning
rate of 0.01.
The loop, the data, the progress bar and the curves are ``training.py``'s, beside this file.

    python examples/train_simple_conv_net.py                 # digits: 3x3 filters, pad 1
    python examples/train_simple_conv_net.py --mnist ~/mnist  # the book's: 5x5, pad 0, 20 epochs
"""
from __future__ import annotations

import math

import symbackprop
from training import SGD, Adam, Data, arguments, fit, run


def images(data: Data) -> Data:
    """Flat square images as the network's ``(N, 1, side, side)``, labels as they are."""
    x_train, t_train, x_test, t_test = data
    side = math.isqrt(x_train.shape[1])
    if side * side != x_train.shape[1]:
        raise ValueError(f"images of {x_train.shape[1]} pixels are not square")
    return (x_train.reshape(-1, 1, side, side), t_train, x_test.reshape(-1, 1, side, side), t_test)


def network(data: Data, filters: int, size: int, pad: int, hidden: int, seed: int):
    """The generated SimpleConvNet for these images, initialized as the book does (std 0.01)."""
    x_train, t_train, _, t_test = data
    classes = int(max(t_train.max(), t_test.max())) + 1
    Net = symbackprop.load("simple_conv_net").compile()
    _, channels, height, width = x_train.shape
    return Net.initialized(C=channels, IH=height, IW=width, FN=filters, FH=size, FW=size, H=hidden, K=classes,
                           seed=seed, stride=1, pad=pad)


def main(argv=None) -> int:
    parser = arguments(__doc__.splitlines()[0], png="simple_conv_net_training.png", lr=None)
    parser.add_argument("--filters", type=int, default=30)
    parser.add_argument("--filter-size", type=int, default=None, help="default: 3 for digits, 5 for MNIST")
    parser.add_argument("--pad", type=int, default=None, help="default: 1 for digits, 0 for MNIST")
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    args = parser.parse_args(argv)
    epochs = args.epochs or 20
    size = args.filter_size or (5 if args.mnist else 3)
    pad = args.pad if args.pad is not None else (0 if args.mnist else 1)
    lr = args.lr or (0.001 if args.mnist else 0.01)

    def train(data: Data, n: int) -> dict[str, list[float]]:
        data = images(data)
        net = network(data, args.filters, size, pad, args.hidden, args.seed)
        optimizer = Adam(lr) if args.optimizer == "adam" else SGD(lr)
        return fit(net, data, n, args.batch, optimizer, args.seed)

    return run("train_simple_conv_net", args, epochs, train)


if __name__ == "__main__":
    raise SystemExit(main())
