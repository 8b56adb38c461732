"""The Requests tab writer: the request log and dead letters, landed in Salesforce (services/requests_tab/land.py)."""
