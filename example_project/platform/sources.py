"""The raw data the platform starts from: generated, deterministic, obviously fictitious.

Four sources, each standing in for a system the company runs: the CRM (contacts with e-mail,
phone and date of birth — personal data), the payment ledger (amounts and IBANs — financial and
personal), the clinic's visit log (ICD-10 diagnosis codes — health data) and public country
reference data. Rows are generated rather than stored so the example needs no data files, and
from fixed formulas so every run (and every test) sees the same values.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

__all__ = ["COUNTRIES", "contacts", "country_codes", "patient_visits", "transactions"]

Row = dict[str, Any]

COUNTRIES: tuple[tuple[str, str, str], ...] = (
    ("DE", "Germany", "EMEA"),
    ("FR", "France", "EMEA"),
    ("NL", "Netherlands", "EMEA"),
    ("US", "United States", "AMER"),
    ("BR", "Brazil", "AMER"),
    ("JP", "Japan", "APAC"),
)
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
        "Perlman", "Berners-Lee")
DIAGNOSES = ("J06.9", "E11.9", "I10", "M54.5", "K21.9", "F41.1")
CONTACTS = 40
TRANSACTIONS = 160
VISITS = 60


def contacts() -> list[Row]:
    """CRM contacts: one row per person."""
    rows = []
    for i in range(1, CONTACTS + 1):
        first, last = FIRST[i % len(FIRST)], LAST[(i * 3) % len(LAST)]
        rows.append({
            "contact_id": i,
            "first_name": first,
            "last_name": last,
            "email": f"{first.lower()}.{last.lower()}{i}@example.com",
            "phone": f"+49 30 5550{i:04d}",
            "date_of_birth": date(1950 + (i * 7) % 50, 1 + i % 12, 1 + (i * 5) % 28),
            "country_code": COUNTRIES[i % len(COUNTRIES)][0],
            "signup_date": date(2024, 1, 1) + timedelta(days=i * 9),
        })
    return rows


def transactions() -> list[Row]:
    """Payments: who paid how much, from which account."""
    rows = []
    for t in range(1, TRANSACTIONS + 1):
        contact = 1 + (t * 7) % CONTACTS
        rows.append({
            "transaction_id": t,
            "contact_id": contact,
            "amount": round(10 + (t * 37) % 490 + (t % 100) / 100, 2),
            "currency": "EUR",
            "iban": f"DE89 3704 0044 0532 {contact:04d} {t % 100:02d}",
            "booked_at": date(2025, 1, 1) + timedelta(days=t * 2),
        })
    return rows


def patient_visits() -> list[Row]:
    """Clinic visits of some contacts, with their diagnosis codes (health data)."""
    return [
        {
            "visit_id": v,
            "patient_id": 1 + (v * 11) % CONTACTS,
            "diagnosis_code": DIAGNOSES[v % len(DIAGNOSES)],
            "visited_on": date(2025, 2, 1) + timedelta(days=v * 3),
        }
        for v in range(1, VISITS + 1)
    ]


def country_codes() -> list[Row]:
    """Public reference data."""
    return [{"country_code": code, "country_name": name, "region": region}
            for code, name, region in COUNTRIES]
