"""The claims benchmark: every method tuned on one budget, seeds at its chosen LR.

`suites` declares what runs (`methods` what is known of each method),
`plan` derives from the finished runs which runs a suite needs next (the
learning-rate choice among them), `runner` trains and caches them (alone or
as one of N workers), `report` turns them into `results/<suite>.{json,md}`;
`python -m train.benchmark` is the command.
"""
