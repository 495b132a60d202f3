"""`python -m mindghost.convert --model ghostnet_100 --src state_dict_73.98.pth --out ghostnet_100.ckpt`."""
import sys


def cli() -> None:
    """Console entry point (`mindghost-convert`): exits through `runtime.run_main`."""
    from ..runtime import run_main
    from .convert import main

    run_main(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
