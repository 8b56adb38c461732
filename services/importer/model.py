"""The shape of an importer entity: where it is read in LogiSense, where it lands in Salesforce.

An `ImportEntity` names its LogiSense source (a paged resource, or a `Deep` search whose nested
children are flattened), its Kafka topic (`<prefix>.catalogue.<entity>` or
`<prefix>.reference.<entity>`, keyed by the LogiSense id), its Salesforce target object with one
`Column` per field, and its `Relation`s to other entities. The entities themselves are the table in
services/importer/entities.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from shared.kafka import Topics

Group = Literal["catalogue", "data", "invoices"]
SfType = Literal["string", "textarea", "boolean", "double", "int", "datetime", "picklist"]


@dataclass(frozen=True)
class Column:
    """One Salesforce field fed by one LogiSense field."""

    salesforce: str
    logisense: str
    type: SfType = "string"


@dataclass(frozen=True)
class Relation:
    """A LogiSense foreign key landed as a Salesforce lookup to the parent entity's record."""

    logisense: str  # the foreign key on the LogiSense item, e.g. packageId
    entity: str  # the parent entity, e.g. package
    salesforce: str  # the lookup field, e.g. Package__c

    @property
    def relationship(self) -> str:
        """The relationship name used to set the lookup by external id (Package__c -> Package__r)."""
        return self.salesforce[:-3] + "__r" if self.salesforce.endswith("__c") else self.salesforce.removesuffix("Id")


@dataclass(frozen=True)
class Deep:
    """A deep search whose nested children are the entity's items: RatePlan/Search -> groups -> rates.

    `path` is the chain of child keys; each flattened item gets the ids of its ancestors under
    `inherit` (ancestor depth -> field name), e.g. a rate gets its rate plan's id as usageRatePlanId.
    """

    route: str
    path: tuple[str, ...]
    inherit: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportEntity:
    name: str
    group: Group
    resource: str  # the LogiSense resource (paged GET)
    sobject: str
    columns: tuple[Column, ...]
    relations: tuple[Relation, ...] = ()
    deep: Deep | None = None
    label: str = ""

    @property
    def kind(self) -> Literal["catalogue", "reference"]:
        return "catalogue" if self.group == "catalogue" else "reference"

    def topic(self, topics: Topics) -> str:
        return topics.catalogue(self.name) if self.kind == "catalogue" else topics.reference(self.name)

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").title()
