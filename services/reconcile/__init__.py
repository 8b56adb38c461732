"""`sfls reconcile`: compare Salesforce with LogiSense through the syncer's mapping, report drift, repair it
through the pipeline (drift.py: the comparison; run.py: reading both sides, output and repair)."""
