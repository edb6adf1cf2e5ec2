"""scaling: measure what buys reasoning accuracy (model size, RL data, thinking tokens) and fit laws to it.

Layers, ground up. A module imports only from its own layer or the layers below it, never in a circle
(``tests/test_layers.py`` reads the import graph, function-level imports included, against this table):

    layer     modules
    io        errors, io, tables, track
    specs     tokenizer, specs, settings, versions
    domain    tasks, model, laws
    numerics  optim, sample, train, checkpoint, evaluate, rl, rl_train
    config    config
    plan      plan
    stages    stages
    sweep     store, claims, sweep, submit
    results   results, analysis, report, plots
    cli       bench, cli, __main__

The layers up to ``plan`` and ``store`` never import jax: validating a config, ``scaling run --dry-run``
and ``scaling status`` answer at once.

Shape letters. A tensor's name carries its shape (``tokens_BxT``, ``cache k_BxHxSxK``); each letter has
one meaning across the package:

    B  rows of a batch                      T  tokens of a sequence (query positions)
    S  key slots (attention keys, KV cache) D  model width       H  heads       K  head dim
    F  MLP width                            V  vocabulary
    L  prompt tokens (left-padded)          W  thinking tokens of a task's trace block
    G  generated tokens                     A  answer tokens                       T1 T - 1 (next-token targets)
    N  flat rows (examples, problems, completions)
    M  samples per problem                  U  thinking budgets decoded together
    R  seeds (replicas in one program)      C  steps in one compiled chunk
    P  prompts per RL step                  Q  completions per prompt (an RL group)
    I  optimiser starts (law fitting)       J  parameters of a law
    X  difficulty levels                    Y  entries of a checker's key (the answer, or a graph)
    E  edges of a graph                     Z  tokens of a node's name
    O  spans a task loss is measured over (the answer; trace and answer)
A digit after a letter is arithmetic on it: T1 = T - 1, A1 = A + 1 (the answer and its <eos>),
K2 = K / 2 (rotary frequency pairs).
"""

__version__ = "0.1.0"
