"""Local emulators of the Salesforce and Zendesk APIs and a webhook receiver (tests and demo).

Start them in-process with `tests.emulators.cluster.start_all`, or as a process with
`python -m tests.emulators serve` (what `deploy/local/emulators up` runs).
"""
