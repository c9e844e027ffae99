"""The claims benchmark: every method tuned on one budget, seeds at its best LR.

`suites` declares what runs (`methods` what is known of each method),
`runner` trains and caches the runs, `report` turns them into
`results/<suite>.{json,md}`; `python -m train.benchmark` is the command.
"""
