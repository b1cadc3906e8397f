"""Experiments that check what dropout is *taught* to be against what it measurably does.

``ensemble``: the weight-scaling rule vs. the exact mean over every dropout mask of a small network.
``train``: the textbook dropout MLP trained in every framework from the same weights and data order.
Nothing here imports a framework at module level; the ``mlp_<framework>`` modules import theirs
inside functions, and only inside a worker process.
"""
