"""The billing admin's view inside Salesforce: the objects and fields sfls writes there, named once.

- `LogiSense_Request__c` (the LogiSense Requests tab): one record per sync request of the request log
  (`<prefix>.requests`), upserted by `Request_Id__c`; `services/requests_tab/` writes it.
- `LogiSense_Request_Error__c` (its Request Error Logs related list): one record per dead letter, a
  master-detail child of the request, upserted by `Dead_Letter_Id__c` (`topic:partition:offset`).
- The Account link (`LINK_FIELDS`): the LogiSense account id, the sync status and reason, and the time of
  the last successful sync, written by the syncer after each account sync (services/syncer/link.py).

`VIEW_SCHEMA` gives them in the JSON shape of the importer's schema (services/importer/targets.py), which
`sfls import schema` turns into Salesforce DX source with the importer's objects.
"""

from __future__ import annotations

from typing import Any

REQUEST_OBJECT = "LogiSense_Request__c"
REQUEST_ID = "Request_Id__c"
ERROR_OBJECT = "LogiSense_Request_Error__c"
ERROR_ID = "Dead_Letter_Id__c"
ERROR_PARENT = "Request__c"  # master-detail to REQUEST_OBJECT; set by external id as Request__r
ERROR_PARENT_RELATIONSHIP = "Request__r"

# The Account link: never trigger fields (shared/settings.py SalesforceFields names those), so their writes
# are no changes to sync even without the client tag.
ACCOUNT_LOGISENSE_ID = "LogiSense_Account_Id__c"
ACCOUNT_SYNC_STATUS = "LogiSense_Sync_Status__c"
ACCOUNT_SYNC_REASON = "LogiSense_Sync_Reason__c"
ACCOUNT_LAST_SYNC = "LogiSense_Last_Synced__c"
LINK_FIELDS = (ACCOUNT_LOGISENSE_ID, ACCOUNT_SYNC_STATUS, ACCOUNT_SYNC_REASON, ACCOUNT_LAST_SYNC)
SYNCED, FAILED = "Synced", "Failed"
REASON_LENGTH = 255

TEXT_LENGTH = 32768  # the long text areas: reason, message, response excerpt (sfls keeps 2,000 characters)

_REQUEST_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": REQUEST_ID, "type": "string", "length": 64, "externalId": True, "unique": True, "label": "Request Id"},
    {"name": "Kind__c", "type": "string", "length": 80, "label": "Kind"},
    {
        "name": "Status__c",
        "type": "picklist",
        "picklistValues": ["Waiting", "Success", "Failed"],
        "restrictedPicklist": True,
        "label": "Status",
    },
    {
        "name": "Account__c",
        "type": "reference",
        "referenceTo": "Account",
        "relationshipName": "Account__r",
        "childRelationshipName": "LogiSense_Requests",
        "deleteConstraint": "SetNull",
        "label": "Account",
    },
    {"name": "Key__c", "type": "string", "length": 80, "label": "Key"},
    {"name": "Service__c", "type": "string", "length": 20, "label": "Service"},
    {"name": "Started__c", "type": "datetime", "label": "Started"},
    {"name": "Duration_Seconds__c", "type": "double", "precision": 12, "scale": 3, "label": "Duration (s)"},
    {"name": "Attempts__c", "type": "int", "precision": 6, "label": "Attempts"},
    {"name": "Events__c", "type": "int", "precision": 9, "label": "Events"},
    {"name": "Reason__c", "type": "textarea", "length": TEXT_LENGTH, "label": "Reason"},
)
_ERROR_FIELDS: tuple[dict[str, Any], ...] = (
    {
        "name": ERROR_PARENT,
        "type": "reference",
        "referenceTo": REQUEST_OBJECT,
        "relationshipName": ERROR_PARENT_RELATIONSHIP,
        "childRelationshipName": "Request_Error_Logs",
        "masterDetail": True,
        "label": "Request",
    },
    {"name": ERROR_ID, "type": "string", "length": 255, "externalId": True, "unique": True, "label": "Dead Letter"},
    {"name": "Error_Class__c", "type": "string", "length": 255, "label": "Error Class"},
    {"name": "Message__c", "type": "textarea", "length": TEXT_LENGTH, "label": "Message"},
    {"name": "HTTP_Status__c", "type": "int", "precision": 3, "label": "HTTP Status"},
    {"name": "Response__c", "type": "textarea", "length": TEXT_LENGTH, "label": "Response Excerpt"},
    {"name": "Attempts__c", "type": "int", "precision": 6, "label": "Attempts"},
    {"name": "First_Failure__c", "type": "datetime", "label": "First Failure"},
    {"name": "Last_Failure__c", "type": "datetime", "label": "Last Failure"},
    {"name": "Topic__c", "type": "string", "length": 249, "label": "Dead-Letter Topic"},
    {"name": "Partition__c", "type": "int", "precision": 6, "label": "Partition"},
    {"name": "Offset__c", "type": "double", "precision": 18, "scale": 0, "label": "Offset"},
    {"name": "Replay_Command__c", "type": "string", "length": 255, "label": "Replay Command"},
)
_LINK_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": ACCOUNT_LOGISENSE_ID, "type": "string", "length": 40, "label": "LogiSense Account Id"},
    {
        "name": ACCOUNT_SYNC_STATUS,
        "type": "picklist",
        "picklistValues": [SYNCED, FAILED],
        "restrictedPicklist": True,
        "label": "LogiSense Sync Status",
    },
    {"name": ACCOUNT_SYNC_REASON, "type": "string", "length": REASON_LENGTH, "label": "LogiSense Sync Reason"},
    {"name": ACCOUNT_LAST_SYNC, "type": "datetime", "label": "LogiSense Last Synced"},
)

VIEW_SCHEMA: dict[str, Any] = {
    "objects": [
        {
            "name": REQUEST_OBJECT,
            "label": "LogiSense Request",
            "pluralLabel": "LogiSense Requests",
            "nameLabel": "Request",
            "tab": True,
            "fields": list(_REQUEST_FIELDS),
        },
        {
            "name": ERROR_OBJECT,
            "label": "Request Error Log",
            "pluralLabel": "Request Error Logs",
            "nameLabel": "Error",
            "fields": list(_ERROR_FIELDS),
        },
    ],
    "fields": {"Account": list(_LINK_FIELDS)},
}
