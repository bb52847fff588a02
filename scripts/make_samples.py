"""Write the bundled sample folder: a dozen internal documents of a fictional company, Northwind Analytics.

Run from the repository root: `.venv/bin/python scripts/make_samples.py` (the files are committed).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.docgen import (  # noqa: E402
    write_csv, write_docx, write_eml, write_json, write_pdf, write_pptx, write_xlsx,
)

OUT = Path("samples")


def main() -> None:
    for sub in ("hr", "it", "onboarding", "engineering", "intranet", "sales", "mail", "finance"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)

    write_pdf(OUT / "hr" / "leave-policy.pdf", title="Leave and Vacation Policy (HR-04, rev. 2026)", pages=[
        "Leave and Vacation Policy\n\nPolicy HR-04, revision 2026, owner: People Operations.\n\n"
        "1. Vacation. Every full-time employee receives 25 days of paid vacation per calendar year, "
        "new employees included; in their first year the days are prorated from the start date. Part-time "
        "employees receive vacation in proportion to their contracted hours.\n\n"
        "2. Carry-over. Up to 5 unused vacation days may be carried over into the next year and must be "
        "taken by 31 March; days beyond that lapse.\n\n"
        "3. Requesting leave. Vacation is requested in the HR portal at least two weeks in advance and "
        "approved by the line manager.",
        "4. Sick leave. Employees who are ill notify their manager before 10:00 on the first day. A doctor's "
        "note is required from the fourth consecutive day of illness.\n\n"
        "5. Parental leave. Employees receive 16 weeks of fully paid parental leave, which can be taken in "
        "up to three blocks within the child's first two years.\n\n"
        "6. Public holidays. The company observes the public holidays of the office location; the list is "
        "published in the HR portal each December.",
    ])

    write_docx(OUT / "it" / "it-handbook.docx", title="IT Handbook", heading="IT Handbook", paragraphs=[
        "This handbook explains how to get connected and stay secure at Northwind Analytics.",
        "VPN: remote access uses the GlobalProtect client. Connect to the portal vpn.northwind.example with your "
        "network account; the VPN is required for the finance systems and the file shares.",
        "Passwords must be at least 14 characters long and are changed every 180 days. Multi-factor "
        "authentication with the Authenticator app is mandatory for e-mail, VPN and the HR portal.",
        "Laptops are replaced every three years. A lost or stolen laptop must be reported to the IT "
        "helpdesk within one hour so it can be locked remotely.",
        "The IT helpdesk is reachable on extension 4357 (HELP) from 08:00 to 18:00, or at "
        "helpdesk@northwind.example at any time.",
    ], table=[["Software", "How to get it"], ["Microsoft 365", "pre-installed"],
              ["Tableau Desktop", "request in the self-service portal"], ["Python 3.11", "Software Center"]])

    write_pptx(OUT / "onboarding" / "welcome-deck.pptx", slides=[
        ("Welcome to Northwind Analytics", "Your first week, step by step"),
        ("Your first day", "Pick up your badge at the reception desk at 8:30.\nYour manager meets you at 9:00."),
        ("Your buddy", "Every newcomer gets an onboarding buddy from another team for the first 90 days."),
        ("Pay and expenses", "Salaries are paid on the 25th of each month.\nExpenses are filed in Concur."),
        ("Tools", "Chat: Slack. Tickets: Jira. Documents: SharePoint."),
    ], notes=["", "Reception is on the ground floor of building A.", "", "", ""])

    (OUT / "engineering" / "release-notes-4.2.md").write_text(
        "# Release notes: Northwind Insights 4.2\n\nReleased on 14 October 2026.\n\n## New\n\n"
        "- Scheduled reports can now be exported as PDF and sent to a Teams channel.\n"
        "- Dashboards load about 40% faster thanks to the new query cache.\n"
        "- Single sign-on supports Okta in addition to Azure AD.\n\n## Fixed\n\n"
        "- CSV exports no longer drop the last row when a filter is applied (ticket NW-2211).\n"
        "- Time zones in scheduled reports follow the user's profile setting.\n\n"
        "## Deprecated\n\nThe legacy REST API v1 will be switched off on 31 March 2027; migrate to v2.\n")

    (OUT / "intranet" / "cafeteria.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Cafeteria and Parking</title>"
        "<style>body{font-family:sans-serif}</style><script>trackPageView('cafeteria');</script></head>"
        "<body><nav><a href='/'>Home</a> | <a href='/hr'>HR</a> | <a href='/it'>IT</a></nav>"
        "<header>Northwind Intranet</header><main><h1>Cafeteria and Parking</h1>"
        "<p>The cafeteria on the second floor of building A is open from 7:30 to 15:00 on working days. "
        "Lunch is served from 11:30 to 14:00 and costs 6.50 EUR with the employee badge.</p>"
        "<p>Parking in the underground garage is free for employees; visitors register at the reception to "
        "receive a day ticket. Bicycle racks and e-bike chargers are next to the north entrance.</p></main>"
        "<footer>Last updated by Facilities, November 2026</footer></body></html>", encoding="utf-8")

    write_xlsx(OUT / "sales" / "price-list-2026.xlsx", title="Price list 2026", sheets={"Prices": [
        ["Product", "Edition", "Price per user per month (EUR)", "Minimum users"],
        ["Northwind Insights", "Team", 29, 5],
        ["Northwind Insights", "Business", 49, 20],
        ["Northwind Insights", "Enterprise", 79, 100],
        ["Data Connector Pack", "Add-on", 12, 1],
    ]})

    write_csv(OUT / "sales" / "discount-tiers.csv", [
        ["Annual contract value (EUR)", "Discount", "Approval needed"],
        ["up to 50,000", "0%", "none"],
        ["50,000 to 250,000", "10%", "sales manager"],
        ["over 250,000", "18%", "VP Sales"],
    ])

    write_eml(OUT / "mail" / "office-move.eml", sender="Facilities <facilities@northwind.example>",
              to="All staff <all@northwind.example>", subject="Office move to Harbour Building on 7 December",
              body="Dear colleagues,\n\nOn Monday 7 December 2026 the Berlin office moves to the Harbour Building, "
                   "Hafenstrasse 12. Please pack your desk into the labelled crates by Friday 4 December at 15:00. "
                   "Movers will also take monitors; laptops stay with you.\n\nThe new building has 4 meeting rooms "
                   "on each floor, bookable in Outlook.\n\nBest regards,\nFacilities team\n")

    (OUT / "finance" / "travel-policy.txt").write_text(
        "Travel and Expenses Policy\n\nBook all business travel through the travel portal. Flights shorter than "
        "six hours are booked in economy class; longer flights may be booked in premium economy.\n\n"
        "The daily allowance (per diem) for meals is 45 EUR in Germany and follows the official rates abroad.\n"
        "Hotel costs are reimbursed up to 150 EUR per night, 220 EUR in London, Paris and New York.\n\n"
        "Expense reports with receipts are submitted in Concur within 30 days of the trip.\n", encoding="utf-8")

    (OUT / "it" / "on-call.rst").write_text(
        "On-call rotation\n================\n\nThe platform team runs a weekly on-call rotation that starts every "
        "Monday at 10:00.\nThe on-call engineer answers pages within 15 minutes, day and night.\n\n"
        "Escalation\n----------\n\nIf the on-call engineer does not acknowledge a page within 15 minutes, "
        "PagerDuty escalates to the team lead, then to the head of engineering.\nOn-call weeks are compensated "
        "with 300 EUR and one extra day off.\n", encoding="utf-8")

    write_json(OUT / "engineering" / "service-catalog.json", {
        "title": "Service catalog",
        "services": [
            {"name": "insights-api", "owner": "Platform team", "tier": 1, "runbook": "wiki/runbooks/insights-api"},
            {"name": "report-scheduler", "owner": "Reporting team", "tier": 2, "runbook": "wiki/runbooks/scheduler"},
            {"name": "billing", "owner": "Finance engineering", "tier": 1, "runbook": "wiki/runbooks/billing"},
        ],
    })

    write_docx(OUT / "hr" / "code-of-conduct.docx", title="Code of Conduct", heading="Code of Conduct", paragraphs=[
        "We treat colleagues, customers and partners with respect. Harassment and discrimination of any kind "
        "are not tolerated.",
        "Gifts from customers or suppliers worth more than 50 EUR must be declared to Compliance.",
        "Concerns can be raised anonymously through the whistleblower hotline, which is run by an external "
        "ombudsperson.",
    ])


if __name__ == "__main__":
    main()
