"""The deterministic seeded data set: reference data, a catalogue of any size, accounts and invoices.

`build(seed, catalogue_size, accounts)` returns a fresh Store. The same arguments always give the
same data (one `random.Random(seed)`, fixed timestamps), so tests can assert on it and a benchmark can
ask for 100,000 catalogue items (a couple of seconds; rows are compact tuples).

Reference data (fixed names; the Salesforce app matches on them): one owner and its currencies
(USD default, CAD, EUR, GBP), account types, account status types (Active, Suspended, Closed), bill
groups, AR terms, countries with states, contact types (Billing, Shipping, Technical, Other), each with
the contact point types email, phone, address and the text point `sfdcid`, and the share levels.

The catalogue counts every record as one item: services (some with usage buckets), rate plans (two
rate groups of two rates each), packages (frequencies with the `family` custom field, currencies,
package services with their rate plan connection, and a pricing rule per frequency and service)
and share plans; share plans fill the remainder so the total is exactly `catalogue_size` (for
sizes of about 20 and more).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from devstack.logisense.resources import RESOURCES
from devstack.logisense.store import Store

SEED_TIMESTAMP = "2024-01-01T00:00:00.000Z"
CONTACT_POINTS = (  # name, dataTypeId (1 text, 2 email, 3 phone, 4 address), allowMultiple
    ("email", 2, False),
    ("phone", 3, True),
    ("address", 4, False),
    ("sfdcid", 1, False),
)
CURRENCIES = (("US Dollars", "USD", "$"), ("Canadian Dollars", "CAD", "$"), ("Euro", "EUR", "€"), ("Pound", "GBP", "£"))
COUNTRIES: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("United States", "US"): (("California", "CA"), ("New York", "NY"), ("Texas", "TX"), ("Washington", "WA")),
    ("Canada", "CA"): (("Ontario", "ON"), ("Quebec", "QC"), ("British Columbia", "BC"), ("Alberta", "AB")),
    ("United Kingdom", "GB"): (),
    ("Germany", "DE"): (("Bavaria", "BY"), ("Berlin", "BE")),
}
FAMILIES = ("Hardware", "Software", "Services", "Connectivity")
WORDS = ("Basic", "Pro", "Plus", "Fiber", "Cloud", "Voice", "Data", "Metro", "Edge", "Prime", "Core", "Flex")
CATALOGUE_ROUTES = (
    "Service",
    "Usage/Bucket",
    "Usage/Rate/Plan",
    "Usage/Rate/Group",
    "Usage/Rate",
    "Package",
    "Package/Frequency",
    "Package/Currency",
    "Package/Service",
    "PricingRule",
    "Usage/Bucket/SharePlan",
)


class _Seeder:
    def __init__(self, store: Store, rng: random.Random) -> None:
        self.store = store
        self.rng = rng

    def add(self, route: str, **values: Any) -> int:
        table = self.store.tables[route]
        identity = table.allocate()
        record: dict[str, Any] = {f.name: (False if f.type == "bool" else None) for f in RESOURCES[route].fields}
        record.update(values)
        record["identity"] = identity
        if "created" in table.position:
            record["created"] = record["created"] or SEED_TIMESTAMP
            record["updated"] = record["updated"] or SEED_TIMESTAMP
        if "ownerId" in table.position and record.get("ownerId") is None:
            record["ownerId"] = 1
        table.put(identity, record)
        return identity


def build(
    seed: int,
    catalogue_size: int,
    *,
    accounts: int = 0,
    invoices_per_account: int = 3,
    custom_fields: dict[str, Iterable[str]] | None = None,
    case_insensitive: bool = True,
) -> Store:
    """A fresh store holding the seeded data set."""
    fields = {"Account": ("sfdcid",), "Package/Frequency": ("family",)} if custom_fields is None else custom_fields
    store = Store(dict(fields), case_insensitive=case_insensitive)
    seeder = _Seeder(store, random.Random(seed))
    _reference_data(seeder)
    _catalogue(seeder, max(0, catalogue_size))
    for number in range(1, accounts + 1):
        account = seeder.add(
            "Account",
            name=f"Seed Account {number:04d}",
            accountTypeId=1,
            accountStatusTypeId=1,
            billGroupId=1,
            accountsReceivableTermsId=1,
            currencyId=1,
        )
        generate_invoices(store, seeder.rng, account, invoices_per_account)
    return store


def _reference_data(s: _Seeder) -> None:
    s.add("Owner", name="sfls Devstack Billing")
    for index, (name, code, symbol) in enumerate(CURRENCIES):
        currency = s.add("Currency", name=name, code=code, symbol=symbol, isDefault=index == 0)
        s.add("Owner/Currency", ownerId=1, currencyId=currency)
    for index, name in enumerate(("Customer", "Partner", "Reseller", "Internal")):
        s.add("AccountType", name=name, isDefault=index == 0)
    s.add("Account/StatusType", name="Active", isDefault=True, baseBillingStatusTypeId=1)
    s.add("Account/StatusType", name="Suspended", baseBillingStatusTypeId=2)
    s.add("Account/StatusType", name="Closed", preventChanges=True, baseBillingStatusTypeId=3)
    s.add("BillGroup", name="Bill Group 1st", billDay=1, usageBillDay=1, isDefault=True)
    s.add("BillGroup", name="Bill Group 15th", billDay=15, usageBillDay=15)
    for index, (name, days) in enumerate((("Net 30", 30), ("Net 15", 15), ("Net 60", 60), ("Due on Receipt", 0))):
        s.add("AccountsReceivable/Terms", name=name, paymentTermId=days, isDefault=index == 0)
    for order, ((name, code), states) in enumerate(COUNTRIES.items(), start=1):
        country = s.add("Country", name=name, countryCode=code, sortOrder=order, isVisible=True)
        for state_order, (state, abbreviation) in enumerate(states, start=1):
            s.add("State", countryId=country, name=state, code=abbreviation, sortOrder=state_order, isVisible=True)
    for type_type, name in enumerate(("Billing", "Shipping", "Technical", "Other"), start=1):
        contact_type = s.add(
            "ContactType",
            name=name,
            contactTypeTypeId=type_type,
            description=f"{name} contact",
            isRequired=name == "Billing",
            showOnNewAccount=name == "Billing",
        )
        for point, data_type, multiple in CONTACT_POINTS:
            s.add(
                "ContactPointType",
                name=point,
                dataTypeId=data_type,
                contactTypeId=contact_type,
                allowMultiple=multiple,
                isCore=point != "sfdcid",
            )
    s.add("Usage/Bucket/ShareLevel", name="Account", description="Account level")
    s.add("Usage/Bucket/ShareLevel", name="Invoice Recipient", description="Invoice recipient level")


def _catalogue(s: _Seeder, size: int) -> None:
    rng = s.rng
    remaining = size
    service_budget, plan_budget = size * 15 // 100, size * 20 // 100
    package_budget = size * 60 // 100

    services: list[int] = []
    buckets: list[int] = []
    while remaining > 0 and (not services or service_budget > 0):
        word = rng.choice(WORDS)
        service = s.add(
            "Service",
            name=f"{word} Service {len(services) + 1:05d}",
            description=f"{word} service",
            serviceTypeId=rng.randint(1, 3),
            serviceBaseTypeId=rng.randint(1, 3),
            serviceCategoryId=rng.randint(1, 2),
            defaultServiceStatusTypeId=1,
            usageFrequency=1,
            usageFrequencyTypeId=3,
            isActive=True,
        )
        services.append(service)
        used = 1
        if rng.random() < 0.5 and remaining > 1:
            buckets.append(
                s.add(
                    "Usage/Bucket",
                    name=f"{rng.choice((100, 500, 1000))} units {service}",
                    serviceId=service,
                    usageBucketBaseId=rng.randint(1, 3),
                    prorate=rng.random() < 0.5,
                    refillFrequency=1,
                    refillFrequencyTypeId=3,
                )
            )
            used += 1
        service_budget -= used
        remaining -= used

    plans: list[int] = []
    while remaining >= 7 and (not plans or plan_budget > 0):
        plan = s.add(
            "Usage/Rate/Plan",
            name=f"Rate Plan {len(plans) + 1:05d}",
            displayName=f"{rng.choice(WORDS)} rates",
            amountPrecision=4,
        )
        plans.append(plan)
        for priority in (1, 2):
            group = s.add(
                "Usage/Rate/Group",
                usageRatePlanId=plan,
                name=f"Group {priority} of plan {plan}",
                currencyId=rng.randint(1, len(CURRENCIES)),
                start=SEED_TIMESTAMP,
                priority=priority,
                isAggregated=priority == 1,
            )
            for usage_class in (1, 2):
                s.add(
                    "Usage/Rate",
                    usageRateGroupId=group,
                    usageClassId=usage_class,
                    amount=round(rng.uniform(0.001, 0.5), 4),
                    displayName=f"Class {usage_class}",
                )
        plan_budget -= 7
        remaining -= 7

    packages = 0
    while remaining >= 12 and (packages == 0 or package_budget > 0) and services:
        used = _package(s, services, plans, packages + 1)
        packages += 1
        package_budget -= used
        remaining -= used

    levels = (1, 2)
    while remaining > 0 and buckets:
        s.add(
            "Usage/Bucket/SharePlan",
            name=f"Share Plan {remaining}",
            description="Pooled usage",
            usageBucketId=rng.choice(buckets),
            usageBucketShareLevelId=rng.choice(levels),
            participatingAmount=float(rng.choice((100, 250, 500))),
            contributingAmount=float(rng.choice((50, 100))),
        )
        remaining -= 1
    while remaining > 0:  # no bucket to share: pad with plain services
        services.append(s.add("Service", name=f"Extra Service {remaining:05d}", isActive=True, serviceTypeId=2))
        remaining -= 1


def _package(s: _Seeder, services: list[int], plans: list[int], number: int) -> int:
    """One package with its children (at most 12 items); returns the number of items added."""
    rng = s.rng
    word = rng.choice(WORDS)
    package = s.add(
        "Package",
        name=f"{word} Package {number:05d}",
        description=f"{word} bundle",
        start=SEED_TIMESTAMP,
        postPaid=rng.random() < 0.3,
        fullPeriod=True,
        billOnAccountBillDay=True,
        isActive=True,
    )
    used = 1
    frequencies = []
    for months in rng.sample((1, 3, 12), rng.randint(1, 2)):
        frequencies.append(
            s.add(
                "Package/Frequency",
                packageId=package,
                name=f"{word} {months}M",
                frequency=months,
                frequencyTypeId=3,
                sku=f"SKU-{number:05d}-{months:02d}",
                isActive=True,
                family=rng.choice(FAMILIES),
            )
        )
        used += 1
    currencies = [1, *rng.sample(range(2, len(CURRENCIES) + 1), rng.randint(0, 1))]
    for currency in currencies:
        s.add("Package/Currency", packageId=package, currencyId=currency)
        used += 1
    for service in rng.sample(services, min(len(services), rng.randint(1, 2))):
        plan = rng.choice(plans) if plans and rng.random() < 0.7 else None
        s.add("Package/Service", packageId=package, serviceId=service, usageRatePlanId=plan)
        used += 1
        for frequency in frequencies:
            s.add(
                "PricingRule",
                packageFrequencyId=frequency,
                serviceId=service,
                currencyId=1,
                serviceStatusTypeId=1,
                amount=round(rng.uniform(5, 500), 2),
                chargeType=rng.choice(("recurring", "recurring", "oneTime")),
                tiers=[],
            )
            used += 1
    return used


def generate_invoices(store: Store, rng: random.Random, account: int, count: int) -> list[int]:
    """A bill run for one account: `count` invoices with items, tax summary and history."""
    seeder = _Seeder(store, rng)
    invoices = store.tables["Invoice"]
    currency = store.tables["Account"].value(account, "currencyId")
    balance = 0.0
    made = []
    for _ in range(count):
        number = invoices.next_id
        month = (number - 1) % 12 + 1
        amount = round(rng.uniform(20, 2000), 2)
        invoice = seeder.add(
            "Invoice",
            accountId=account,
            name=f"INV-{number:07d}",
            date=f"2024-{month:02d}-01T00:00:00.000Z",
            due=f"2024-{month:02d}-28T00:00:00.000Z",
            sent=f"2024-{month:02d}-02T00:00:00.000Z",
            invoiceStatusTypeId=rng.choice((1, 2, 3)),
            processed=True,
            previousBalance=balance,
            balance=round(balance + amount, 2),
            currencyId=currency,
        )
        balance = round(balance + amount, 2)
        tax = round(amount * 0.13, 2)
        for line, share in enumerate((0.6, 0.4), start=1):
            seeder.add(
                "Invoice/Item",
                invoiceId=invoice,
                invoiceAmount=round((amount - tax) * share, 2),
                periodStart=f"2024-{month:02d}-01T00:00:00.000Z",
                periodEnd=f"2024-{month:02d}-28T00:00:00.000Z",
                invoiceItemTypeId=line,
                description=f"Line {line}",
            )
        seeder.add("Invoice/TaxSummary", invoiceId=invoice, taxRateName="HST 13%", invoiceAmount=tax)
        seeder.add(
            "Invoice/History",
            invoiceId=invoice,
            date=f"2024-{month:02d}-02T00:00:00.000Z",
            action="sent",
            amount=amount,
        )
        made.append(invoice)
    return made
