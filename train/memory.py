"""`python -m train.memory`: the train step's memory per device, compiled
without allocating (:mod:`train.hardware.memory`)."""

from train.hardware.memory import main

if __name__ == "__main__":
  main()
