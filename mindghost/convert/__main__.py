"""`python -m mindghost.convert --model ghostnet_100 --src state_dict_73.98.pth --out ghostnet_100.ckpt`."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")  # before MindSpore loads: its C++ warnings would flood the console
    from .convert import main

    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # skips MindSpore 2.10's `Cell.__del__ ... total_instance_count` noise at interpreter exit
