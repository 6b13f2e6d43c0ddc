"""Each verb's options, declared with light imports only so that ``fmnist VERB --help`` answers at once.

One module per verb, named by the verb's row in :data:`fmnist.commands.VERBS`; each defines
``build_parser(prog) -> argparse.ArgumentParser`` (``train`` defines ``parse(argv, prog)`` instead).
"""
