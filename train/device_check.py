"""`python -m train.device_check`: the one prepared script for a machine
with an accelerator (:mod:`train.hardware.device_check`)."""

from train.hardware.device_check import main

if __name__ == "__main__":
  main()
