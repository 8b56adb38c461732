"""A Salesforce emulator faithful enough for simple-salesforce and aiosfstream-ng, unchanged.

Modules, by concern: `schema` (objects and fields), `base` (errors, ids, values), `store`
(records and DML transactions), `cdc` (where a transaction becomes change events; the replay
log), `soql` (the query subset), `rest` (OAuth and REST handlers), `cometd` (the Streaming API),
`admin` (the /__admin/ test and benchmark API), `state` (everything in memory), `app` (the
aiohttp application and how to run it), `__main__` (the command line).
"""
