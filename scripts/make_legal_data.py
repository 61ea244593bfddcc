"""Generate the legal demo's golden dataset (suites/data/legal/{train,eval}.jsonl).

Every clause is composed from a hand-written template (written for evalkit) whose slots are
filled with values drawn from a fixed-seed random generator. Train and eval use two disjoint
sets of templates: every eval clause comes from a template whose wording never appears in the
train split, so the eval split measures generalisation to unseen phrasings, not recall.

Run from the repository root:

    .venv/bin/python scripts/make_legal_data.py           # regenerate and check
    .venv/bin/python scripts/make_legal_data.py --check   # check the committed files only
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SEED = 20250117
OUT_DIR = Path(__file__).resolve().parent.parent / "suites" / "data" / "legal"
PROMPT_PREFIX = "Summarize this contract clause in the house format."

TYPES = (
    "confidentiality",
    "termination",
    "payment",
    "indemnification",
    "limitation_of_liability",
    "governing_law",
    "assignment",
    "non_compete",
    "force_majeure",
    "warranty",
    "intellectual_property",
    "notice",
)
OBLIGORS = (
    "Supplier",
    "Customer",
    "Licensor",
    "Licensee",
    "Employer",
    "Employee",
    "Landlord",
    "Tenant",
    "both",
)
ROWS_PER_TYPE = {"train": 15, "eval": 6}
CLAUSE_WORDS = (35, 90)
SUMMARY_WORDS = (8, 25)
SPAN = 12  # no eval clause may share a run of this many words with any train clause

# (obligor, other party). For mutual templates the pair only names the two parties.
SC = ("Supplier", "Customer")
CS = ("Customer", "Supplier")
LR = ("Licensor", "Licensee")
LE = ("Licensee", "Licensor")
EM = ("Employer", "Employee")
EY = ("Employee", "Employer")
LD = ("Landlord", "Tenant")
TN = ("Tenant", "Landlord")


@dataclass(frozen=True)
class Template:
    type: str
    pairs: tuple[tuple[str, str], ...]
    clause: str
    summary: str
    mutual: bool = False
    subjects: tuple[str, ...] = ()


def t(
    type_: str,
    pairs: tuple[tuple[str, str], ...],
    clause: str,
    summary: str,
    *,
    mutual: bool = False,
    subjects: tuple[str, ...] = (),
) -> Template:
    return Template(
        type_, pairs, " ".join(clause.split()), " ".join(summary.split()), mutual, subjects
    )


# ---------------------------------------------------------------------------------------------
# Train templates: five per type.
# ---------------------------------------------------------------------------------------------
TRAIN_TEMPLATES: tuple[Template, ...] = (
    # confidentiality
    t(
        "confidentiality",
        (CS, SC, LE, LR, EY, EM),
        """The {O} shall keep confidential all information disclosed to the {O} by the {X} in
        connection with {agr}, shall use such information solely for the purpose of performing
        {its} obligations, and shall not disclose it to any third party without the prior
        written consent of the {X}. These obligations shall survive for {y1} after termination.""",
        """The {O} must keep the {X}'s information confidential and use it only for the
        agreement, for {y1s} after termination.""",
    ),
    t(
        "confidentiality",
        (SC, LR, LD, EM),
        """Each party undertakes that it shall not at any time during the term of {agr} and for
        {y1} after its expiry disclose to any person any confidential information concerning the
        [[business, customers or suppliers|business, affairs, customers or clients|operations,
        pricing or customers]] of the other party, except to its employees, officers and
        professional advisers who need to know it and are bound by equivalent duties of
        confidentiality.""",
        """Each party must keep the other's business information confidential during the term
        and for {y1s} afterwards, except for need-to-know staff.""",
        mutual=True,
    ),
    t(
        "confidentiality",
        (EY,),
        """The Employee shall not, during employment or at any time after its termination, use
        for [[personal benefit|personal gain|their own benefit]] or disclose to any person any
        trade secrets, client lists, pricing information or other confidential information of
        the Employer, and shall on request return all documents and devices containing such
        information within {bd}.""",
        """The Employee must never use or disclose the Employer's trade secrets and must return
        confidential materials within {bds} of a request.""",
    ),
    t(
        "confidentiality",
        (LE, CS),
        """The {O} acknowledges that {subject} and [[all related documentation|its accompanying
        documentation|all associated manuals and specifications]] contain confidential
        information of the {X}. The {O} shall protect such information using at least the same
        degree of care it uses for its own confidential information, and in no event less than
        reasonable care, and shall notify the {X} of any unauthorised disclosure within {bd}.""",
        """The {O} must protect the {X}'s confidential information with at least reasonable care
        and report any unauthorised disclosure within {bds}.""",
    ),
    t(
        "confidentiality",
        (TN,),
        """The Tenant shall not disclose the rent, any rent-free period or other incentive
        granted, or any other terms of this Lease to any third party, [[other than its lenders,
        auditors and professional advisers|except to its bank, auditors and legal advisers|save
        to its professional advisers and any prospective lender]], without the prior written
        consent of the Landlord. Any breach of this clause entitles the Landlord to liquidated
        damages of {amt}.""",
        """The Tenant must not reveal the rent or other lease terms to third parties, except
        advisers and lenders, without the Landlord's consent.""",
    ),
    # termination
    t(
        "termination",
        (SC, LR, LD),
        """Either party may terminate {agr} with immediate effect by giving written notice to
        the other party if the other party commits a material breach of [[its obligations|any
        term of {agr}|any of its obligations]] and, where the breach is capable of remedy, fails
        to remedy it within {d1} after receiving written notice specifying the breach and
        requiring it to be remedied.""",
        """Either party may end {agr_s} immediately if the other commits a material breach left
        unremedied for {d1s} after notice.""",
        mutual=True,
    ),
    t(
        "termination",
        (CS, LE),
        """The {O} may terminate {agr} for convenience at any time by giving the {X} not less
        than {d1n} prior written notice, provided that the {O} shall pay all fees accrued up to
        the effective date of termination together with an early termination charge of {amt}.""",
        """The {O} may terminate for convenience on {d1sn} notice, paying accrued fees and a
        termination charge of {amt}.""",
    ),
    t(
        "termination",
        (LE,),
        """Upon expiry or termination of {agr} for any reason, the Licensee shall immediately
        cease all use of {subject}, shall within {bd} return to the Licensor or destroy all
        copies in its possession or control, and shall [[certify such destruction in a written
        statement signed by an authorised officer|certify such destruction in writing signed by
        a director|provide written certification of such destruction signed by an officer]].""",
        """On termination the Licensee must stop using {subject}, return or destroy all copies
        within {bds}, and certify this in writing.""",
    ),
    t(
        "termination",
        (EY,),
        """After the end of the probationary period, the Employee shall give the Employer not
        less than {mnn} written notice of resignation and shall, during the notice period,
        continue to perform all duties faithfully and assist in the [[orderly handover|orderly
        transfer|smooth handover]] of work to any successor nominated by the Employer.""",
        """The Employee must give {mnsn} written notice of resignation and keep working and
        handing over duties during the notice period.""",
    ),
    t(
        "termination",
        (TN,),
        """The Tenant may terminate this Lease by giving the Landlord not less than {mnn}
        written notice expiring on any rent payment date, provided that on the termination date
        the Tenant has paid all rent due, vacated the Premises, removed all of its fixtures and
        belongings, and paid a break premium of {amt}.""",
        """The Tenant may end the lease on {mnsn} notice if it has paid rent, vacated, and paid
        a break premium of {amt}.""",
    ),
    # payment
    t(
        "payment",
        (CS, LE),
        """The {O} shall pay each invoice issued by the {X} within {d1} of the date of invoice.
        Any amount not paid by the due date shall bear interest at {rate} from the due date
        until payment in full, and the {X} may [[suspend performance|suspend its own
        performance|suspend further supply]] while any undisputed amount remains overdue.""",
        """The {O} must pay invoices within {d1s}, with late amounts accruing interest at
        {rate}.""",
    ),
    t(
        "payment",
        (TN,),
        """The Tenant shall pay the annual rent of {rent} by equal {freq} instalments in advance
        on the rent payment dates, without any deduction, counterclaim or set-off, by [[bank
        transfer|direct debit|electronic transfer]] to the account nominated by the Landlord
        from time to time in writing.""",
        """The Tenant must pay annual rent of {rent} in {freq} instalments in advance without
        any deduction or set-off.""",
    ),
    t(
        "payment",
        (EM,),
        """The Employer shall pay the Employee a gross annual salary of {salary}, payable in
        twelve equal monthly instalments in arrears on or before the last working day of each
        month, subject to deductions for income tax and social security contributions required
        by law. The salary shall be reviewed each [[January|April|July]].""",
        """The Employer must pay the Employee a gross annual salary of {salary} monthly in
        arrears, less statutory deductions.""",
    ),
    t(
        "payment",
        (CS, LE),
        """All fees are exclusive of value added tax and other applicable sales taxes, which the
        {O} shall pay in addition at the prevailing rate. The {O} shall pay the one-off setup
        fee of {amt} on signature of {agr} and the recurring subscription fees annually in
        advance [[on each anniversary of the start date|at the start of each contract
        year|within the first month of each contract year]].""",
        """The {O} must pay a setup fee of {amt} on signature, annual fees in advance, and
        applicable taxes on top.""",
    ),
    t(
        "payment",
        (LE,),
        """The Licensee shall pay the Licensor a royalty of {pct} of net sales of all Licensed
        Products, calculated for each calendar quarter and paid within {d1} after the end of
        that quarter, accompanied by a statement showing the number of units sold and the
        royalty due in each territory.""",
        """The Licensee must pay the Licensor a {pct} royalty on net sales within {d1s} after
        each quarter, with a sales statement.""",
    ),
    # indemnification
    t(
        "indemnification",
        (SC, LR),
        """The {O} shall indemnify, defend and hold harmless the {X} and its [[officers,
        employees and agents|directors, staff and contractors|affiliates, officers and
        employees]] from and against all claims, losses, damages, costs and expenses, including
        reasonable legal fees, arising out of any claim that the use of {subject} in accordance
        with {agr} infringes the intellectual property rights of any third party.""",
        """The {O} must defend and indemnify the {X} against third-party claims that using
        {subject} infringes intellectual property rights.""",
    ),
    t(
        "indemnification",
        (CS, LE),
        """The {O} shall indemnify the {X} against all liabilities, costs and expenses incurred
        by the {X} as a result of the {O}'s breach of applicable data protection laws or its
        misuse of {subject}, provided that the {X} notifies the {O} of any such claim within
        {d1} of becoming aware of it.""",
        """The {O} must indemnify the {X} for losses from its data protection breaches or
        misuse, if notified within {d1s}.""",
    ),
    t(
        "indemnification",
        (TN,),
        """The Tenant shall indemnify the Landlord and keep the Landlord indemnified against all
        actions, proceedings, costs, claims and demands arising from any breach of the Tenant's
        covenants in this Lease or from the use of the Premises by the Tenant or [[its
        visitors|its employees and visitors|anyone at the Premises with its permission]], and
        shall maintain public liability insurance of at least {amt} for such liability.""",
        """The Tenant must indemnify the Landlord for claims from covenant breaches or use of
        the Premises and carry {amt} of insurance.""",
    ),
    t(
        "indemnification",
        (SC, LR, LD),
        """Each party shall indemnify the other against all losses, damages and costs arising
        from death or personal injury caused by the negligence of the indemnifying party or its
        personnel, and from any damage to tangible property caused by such negligence, [[subject
        to a maximum of|up to a limit of|capped at]] {amt} per incident.""",
        """Each party must indemnify the other for injury and property damage caused by its
        negligence, up to {amt} per incident.""",
        mutual=True,
    ),
    t(
        "indemnification",
        (EM,),
        """The Employer shall indemnify the Employee against any personal liability, including
        legal costs, reasonably incurred in defending claims brought by third parties in respect
        of acts done in good faith in the proper performance of the Employee's duties, and shall
        maintain [[directors' and officers' insurance cover|liability insurance for the
        Employee|management liability insurance]] of at least {amt}.""",
        """The Employer must indemnify the Employee for liability from good-faith acts in their
        duties and keep {amt} of insurance cover.""",
    ),
    # limitation_of_liability
    t(
        "limitation_of_liability",
        (SC, LR),
        """The {O}'s total aggregate liability arising under or in connection with {agr},
        whether in contract, in tort including negligence, for breach of statutory duty or
        otherwise, shall not exceed [[the total fees paid|the aggregate charges paid|the amounts
        paid]] by the {X} in the {m1} preceding the event giving rise to the claim.""",
        """The {O}'s total liability under {agr_s} is capped at the fees paid by the {X} in the
        preceding {m1s}.""",
    ),
    t(
        "limitation_of_liability",
        (SC, LR, LD, EM),
        """Neither party shall be liable to the other for any indirect, special or consequential
        loss, or for any loss of profits, revenue, [[goodwill or anticipated savings|reputation
        or business opportunity|contracts or anticipated savings]], even if such loss was
        reasonably foreseeable. Nothing in this clause limits liability for fraud or any
        liability that cannot be limited under the laws of {law}.""",
        """Neither party is liable to the other for indirect or consequential losses or lost
        profits, except for fraud.""",
        mutual=True,
    ),
    t(
        "limitation_of_liability",
        (LD,),
        """The Landlord shall not be liable to the Tenant for any loss or damage caused by the
        interruption of services to the Premises, or by the failure of any [[lift, heating or
        security system|air conditioning, lift or access control system|heating, lighting or
        water supply]], unless caused by the Landlord's negligence, and its total liability in
        any lease year shall be limited to {amt}.""",
        """The Landlord is not liable for service interruptions at the Premises unless
        negligent, with liability capped at {amt} a year.""",
    ),
    t(
        "limitation_of_liability",
        (SC, LR),
        """Subject to the exceptions below, the {O}'s maximum liability for all claims in any
        contract year shall be limited to {amt}. This limit does not apply to liability for
        death or personal injury caused by negligence, for fraud or fraudulent
        misrepresentation, or for breach of the confidentiality obligations.""",
        """The {O}'s liability for all claims per contract year is limited to {amt}, except for
        injury, fraud and confidentiality breaches.""",
    ),
    t(
        "limitation_of_liability",
        (CS, LE),
        """The {O}'s liability for any claim brought by the {X} under {agr}, other than claims
        for unpaid fees, shall not exceed {amt} in aggregate, and the {O} shall have no
        liability whatsoever for any loss of business, loss of opportunity or loss of data
        suffered by the {X}.""",
        """Apart from unpaid fees, the {O}'s aggregate liability to the {X} is limited to {amt},
        with no liability for lost business.""",
    ),
    # governing_law
    t(
        "governing_law",
        (SC, LR, EM),
        """{Agr} and any dispute or claim, including non-contractual disputes or claims, arising
        out of or in connection with it or its subject matter or formation shall be governed by
        and construed in accordance with the laws of {law}, and each party irrevocably submits
        to the exclusive jurisdiction of {courts}.""",
        """{Agr_s} is governed by the laws of {law}, with exclusive jurisdiction of {courts}.""",
        mutual=True,
    ),
    t(
        "governing_law",
        (SC, LR),
        """{Agr} shall be governed by the laws of {law}, without regard to its conflict of laws
        principles, and the United Nations Convention on Contracts for the International Sale of
        Goods shall not apply. Any dispute shall be finally resolved by arbitration seated in
        {seat} under the rules of {inst}, and each party waives any objection to that seat.""",
        """{Agr_s} follows the laws of {law}, excludes the UN sales convention, and sends
        disputes to arbitration in {seat}.""",
        mutual=True,
    ),
    t(
        "governing_law",
        (EM, LD, SC),
        """The parties agree that {agr} shall be interpreted under the laws of {law} and that
        {courts} shall have non-exclusive jurisdiction, provided that nothing in this clause
        prevents either party from seeking urgent injunctive or other interim relief in any
        other court of competent jurisdiction.""",
        """Both parties accept the laws of {law}, with non-exclusive jurisdiction of {courts}.""",
        mutual=True,
    ),
    t(
        "governing_law",
        (CS, LE, EY),
        """The {O} agrees that any proceedings brought by the {O} against the {X} arising out of
        {agr} shall be brought exclusively in {courts} and decided under the laws of {law}, and
        the {O} waives any objection to such venue, including any objection on the ground that
        the proceedings have been brought in an inconvenient forum.""",
        """The {O} must bring any claims against the {X} only in {courts}, under the laws of
        {law}.""",
    ),
    t(
        "governing_law",
        (LD,),
        """This Lease and all matters relating to the letting of the Premises are governed by
        the law of {law}, and each party agrees that any dispute about a rent review shall first
        be referred to an independent surveyor acting as an expert, appointed within {bd} of
        either party's request, whose decision shall be final.""",
        """The lease is governed by the law of {law}, and both parties refer rent review
        disputes first to an independent expert surveyor.""",
        mutual=True,
    ),
    # assignment
    t(
        "assignment",
        (SC, LR, EM),
        """Neither party may [[assign, transfer, charge or otherwise deal with|assign, novate,
        subcontract or otherwise transfer]] all or any of its rights or obligations under {agr}
        without the prior written consent of the other party, such consent not to be
        unreasonably withheld or delayed. A request for consent shall be answered within {bd},
        and any purported assignment in breach of this clause is void.""",
        """Neither party may assign or transfer its rights or obligations without the other's
        written consent, which cannot be unreasonably withheld.""",
        mutual=True,
    ),
    t(
        "assignment",
        (LE, CS),
        """The {O} shall not assign, sublicense or transfer {agr} or any rights granted under
        it, whether by operation of law, change of control or otherwise, without the prior
        written consent of the {X}. The {X} may assign {agr} to any of its affiliates on {d1n}
        written notice to the {O}.""",
        """The {O} may not assign, sublicense or transfer its rights without the {X}'s prior
        written consent, including on a change of control.""",
    ),
    t(
        "assignment",
        (TN,),
        """The Tenant shall not assign, underlet, part with or share possession of the whole or
        any part of the Premises, except that it may assign the whole with the Landlord's
        consent where the proposed assignee provides a rent deposit of {amt} and a guarantee
        from [[a guarantor of sufficient financial standing|its parent company|a bank acceptable
        to the Landlord]].""",
        """The Tenant may not assign or sublet the Premises, except assigning the whole with
        consent, a deposit of {amt} and a guarantee.""",
    ),
    t(
        "assignment",
        (EY,),
        """The Employee's rights under {agr} are personal and may not be assigned, pledged or
        transferred, and the Employee may not delegate the performance of any duties to another
        person. The Employer may transfer {agr} to any successor to all or part of its business
        on giving the Employee {d1n} written notice.""",
        """The Employee may not assign their rights or delegate duties, although the Employer
        may transfer {agr_s} to a successor.""",
    ),
    t(
        "assignment",
        (SC, LR),
        """The {O} may not subcontract or assign any of its obligations under {agr} to a third
        party without first obtaining the written approval of the {X}, shall give at least {d1n}
        notice of any proposed subcontractor, and shall remain fully responsible for the acts
        and omissions of any approved subcontractor as if they were its own.""",
        """The {O} may not subcontract or assign its obligations without the {X}'s approval and
        stays responsible for its subcontractors.""",
    ),
    # non_compete
    t(
        "non_compete",
        (EY,),
        """For a period of {m1} after the termination of employment, the Employee shall not,
        within {region}, [[be engaged, employed or interested in|be employed by, provide
        services to or hold shares in|work for or invest in]] any business which competes with
        any business of the Employer in which the Employee was materially involved during the
        final twelve months of employment.""",
        """For {m1s} after leaving, the Employee must not work for a competing business within
        {regions}.""",
    ),
    t(
        "non_compete",
        (SC, LE),
        """During the term of {agr} and for {m1} thereafter, the {O} shall not, directly or
        through any affiliate, manufacture, distribute or promote within {region} any product
        that competes with the products of the {X}, and shall not solicit any distributor of the
        {X} to carry such a product.""",
        """The {O} must not sell products competing with the {X}'s within {regions} during the
        term and for {m1s} afterwards.""",
    ),
    t(
        "non_compete",
        (EY,),
        """The Employee shall not, for {m1} following the termination date, solicit or entice
        away from the Employer any employee [[at manager level or above|in a senior or technical
        role|who reported to the Employee]], or any client with whom the Employee had dealings
        in the last year of employment, whether on the Employee's own account or on behalf of
        any other person.""",
        """The Employee must not poach the Employer's managers or clients for {m1s} after the
        employment ends.""",
    ),
    t(
        "non_compete",
        (LD,),
        """The Landlord shall not, during the term of this Lease, let or permit the use of any
        other unit in the [[shopping centre|retail estate|building]] for the sale of {goods} as
        a principal business, so that the Tenant enjoys exclusivity for that trade, and shall
        enforce equivalent restrictions in all leases of other units granted after {year}.""",
        """The Landlord must not let any other unit to a business mainly selling {goods} during
        the lease.""",
    ),
    t(
        "non_compete",
        (SC, LR),
        """During the term of {agr} and for {m1} afterwards, neither party shall solicit for
        employment or hire any employee of the other party who was involved in the performance
        of {agr}, without the written consent of the other party, although general
        advertisements not targeted at such employees are permitted.""",
        """Neither party may solicit or hire the other's project staff during the term and for
        {m1s} afterwards without consent.""",
        mutual=True,
    ),
    # force_majeure
    t(
        "force_majeure",
        (SC, LR, LD),
        """Neither party shall be in breach of {agr} nor liable for delay in performing, or
        failure to perform, any of its obligations if such delay or failure results from events,
        circumstances or causes beyond its reasonable control, including [[fire, flood,
        epidemic, war, terrorism or governmental action|storm, earthquake, riot, strike or
        epidemic|acts of God, war, sanctions or failure of public networks]]. If the delay
        continues for {d1}, either party may terminate on written notice.""",
        """Neither party is liable for delays caused by events beyond its control, and either
        may terminate if the delay lasts {d1s}.""",
        mutual=True,
    ),
    t(
        "force_majeure",
        (SC, LR),
        """The {O} shall not be liable for any failure or delay in supplying {subject} caused by
        [[strikes, lockouts, shortages of raw materials, failure of public utilities or acts of
        God|industrial action, carrier delays or failure of public utilities|fire, flood or
        shortages of raw materials]], provided that the {O} notifies the {X} of the event within
        {bd} and uses all reasonable endeavours to mitigate its effect.""",
        """The {O} is excused for delays from events beyond its control if it notifies the {X}
        within {bds} and mitigates.""",
    ),
    t(
        "force_majeure",
        (SC, LR, EM),
        """A party affected by a force majeure event shall promptly notify the other party of
        the nature and likely extent of the event, and each party shall use reasonable
        endeavours to mitigate its effects. Performance shall be suspended for the duration of
        the event, but payment obligations already accrued shall remain due within {d1}.""",
        """Each party must promptly notify the other of a force majeure event and both must
        mitigate, while accrued payments remain due.""",
        mutual=True,
    ),
    t(
        "force_majeure",
        (CS, LE),
        """A force majeure event shall not excuse the {O} from paying any sums due under {agr}.
        The {O} may, however, suspend further orders for the duration of the event, provided
        that it gives the {X} written notice within {bd} of the event occurring and resumes
        ordering once the event has ended.""",
        """The {O} must still pay sums due despite a force majeure event, but may suspend orders
        with notice within {bds}.""",
    ),
    t(
        "force_majeure",
        (LD,),
        """The Landlord shall not be responsible for any failure to provide the services to the
        Premises where such failure arises from causes outside its reasonable control, such as
        [[storms, power failures or civil unrest|flooding, strikes or failures of the utility
        network|fire, explosion or national emergencies]], provided that the Landlord restores
        the services within {bd} after the cause ceases.""",
        """The Landlord is not responsible for service failures beyond its control but must
        restore services within {bds} after the cause ends.""",
    ),
    # warranty
    t(
        "warranty",
        (SC,),
        """The Supplier warrants that the Goods shall, for a period of {m1} from delivery,
        conform in all material respects with their description and specification, be free from
        material defects in design, material and workmanship, and be of satisfactory quality.
        The Supplier shall repair or replace any defective Goods at its own cost.""",
        """The Supplier warrants the Goods conform to specification and are defect-free for
        {m1s}, and must repair or replace defective Goods.""",
    ),
    t(
        "warranty",
        (LR,),
        """The Licensor warrants that for {d1} following delivery {subject} will perform
        substantially in accordance with the Documentation. The Licensee's sole remedy for
        breach of this warranty shall be for the Licensor to use reasonable efforts to correct
        the non-conformity or, failing that, to refund the licence fee.""",
        """The Licensor warrants {subject} will perform as documented for {d1s}, with correction
        or refund as the only remedy.""",
    ),
    t(
        "warranty",
        (LD,),
        """The Landlord warrants that it has full power and title to grant this Lease, that the
        Premises may lawfully be used as {use}, and that at the start date the roof, structure
        and building services are in good and substantial repair. The Landlord shall remedy any
        breach of this warranty within {d1}.""",
        """The Landlord warrants its title, lawful use of the Premises as {use}, and structural
        repair, remedying breaches within {d1s}.""",
    ),
    t(
        "warranty",
        (SC, LR),
        """The {O} warrants that {subject} will be provided with reasonable skill and care by
        suitably qualified personnel, in accordance with good industry practice and in
        compliance with all applicable laws. If the {X} notifies a breach of this warranty
        within {d1}, the {O} shall re-perform the affected work free of charge.""",
        """The {O} warrants {subject} will be provided with skill and care, redoing faulty work
        free if notified within {d1s}.""",
        subjects=("the Services", "the Deliverables", "the Support Services", "the Platform"),
    ),
    t(
        "warranty",
        (EY,),
        """The Employee warrants that by entering into {agr} and performing the duties under it,
        the Employee will not be in breach of any restrictive covenant, confidentiality
        obligation or other duty owed to a former employer, that all qualifications disclosed to
        the Employer are genuine, and that the Employee will notify the Employer within {bd} if
        this ceases to be true.""",
        """The Employee warrants they owe no conflicting duties to a former employer and that
        their disclosed qualifications are genuine.""",
    ),
    # intellectual_property
    t(
        "intellectual_property",
        (EY,),
        """The Employee hereby assigns to the Employer, [[with full title guarantee|by way of
        present assignment|absolutely]], all present and future intellectual property rights in
        any inventions, works, designs or software created by the Employee in the course of
        employment, and shall within {bd} of any request sign any documents reasonably required
        to perfect such assignment.""",
        """The Employee assigns to the Employer all intellectual property created during
        employment and must sign documents to perfect the assignment.""",
    ),
    t(
        "intellectual_property",
        (LE,),
        """The Licensee acknowledges that all intellectual property rights in {subject} remain
        vested in the Licensor. The Licensee shall not copy, modify, decompile or reverse
        engineer {subject}, except to the extent permitted by law, shall not remove any
        proprietary notices, and shall not install {subject} on more than {n} devices.""",
        """The Licensee must respect the Licensor's ownership of {subject} and may not copy,
        modify or reverse engineer it.""",
    ),
    t(
        "intellectual_property",
        (SC,),
        """Upon payment in full of the fees of {amt}, the Supplier assigns to the Customer all
        intellectual property rights in the Deliverables created specifically for the Customer,
        but the Supplier retains ownership of its pre-existing materials and grants the Customer
        a perpetual, royalty-free licence to use them as part of the Deliverables.""",
        """Once paid, the Supplier assigns the bespoke Deliverables' rights to the Customer,
        keeping pre-existing materials but licensing them perpetually.""",
    ),
    t(
        "intellectual_property",
        (CS, SC, LE, TN),
        """The {O} shall not use the name, logo or trade marks of the {X} in any advertising,
        publicity or client list without the prior written approval of the {X}, and shall cease
        any approved use within {bd} of a written request from the {X}. All goodwill arising
        from any such use accrues to the {X}.""",
        """The {O} must not use the {X}'s name or trade marks in publicity without approval and
        must stop on request.""",
    ),
    t(
        "intellectual_property",
        (LE,),
        """Any improvements, modifications or derivative works of {subject} made by or for the
        Licensee shall be owned by the Licensor, and the Licensee shall disclose each such
        improvement to the Licensor in writing within {d1} of its creation and shall not apply
        to register any patent or design covering it.""",
        """The Licensee must disclose improvements to {subject} within {d1s}, and the Licensor
        owns all such improvements.""",
    ),
    # notice
    t(
        "notice",
        (SC, LR, EM),
        """Any notice given by either party under or in connection with {agr} shall be in
        writing and shall be delivered by hand or by [[pre-paid first-class post|recorded
        delivery|registered airmail]] at the registered office of the recipient, or sent by
        email to the address specified in Schedule {sched}. A notice sent by post is deemed
        received {bd} after posting.""",
        """Each party must give notices in writing by hand, post or email, with posted notices
        deemed received after {bds}.""",
        mutual=True,
    ),
    t(
        "notice",
        (SC, CS, LR),
        """The {O} shall notify the {X} in writing within {bd} of any change to its registered
        office, bank account details or email address for notices, and until such notification
        is received by the {X}, notices sent to the previous address shall be deemed to have
        been validly served.""",
        """The {O} must tell the {X} within {bds} of any change to its notice address or bank
        details.""",
    ),
    t(
        "notice",
        (TN,),
        """All notices from the Tenant to the Landlord under this Lease, including any notice
        exercising a break option, shall be served by recorded delivery at the address of the
        Landlord's managing agent stated in the Particulars, and shall not be validly served by
        email. The Tenant shall also send a copy to the Landlord's solicitors within {bd}.""",
        """The Tenant must serve notices on the Landlord by recorded delivery to the managing
        agent, not by email.""",
    ),
    t(
        "notice",
        (EM, LR, LD),
        """Any notice given by either party shall be deemed to have been received: if delivered
        by hand, at the time it is left at the proper address; if sent by registered post, at
        9.00 am on the {ordinal} business day after posting; or if sent by email, at the time of
        transmission, provided no bounce-back message is received.""",
        """Notices from either party are deemed received on hand delivery, on the {ordinal}
        business day after posting, or on emailing.""",
        mutual=True,
    ),
    t(
        "notice",
        (EY,),
        """The Employee shall address all notices under {agr} to the Employer's head of people
        at its principal place of business, marked for the attention of the company secretary,
        and shall keep the Employer informed of a current home address for service, notifying
        any change within {bd} of moving.""",
        """The Employee must send all notices to the Employer's head of people and report any
        change of home address within {bds}.""",
    ),
)

# ---------------------------------------------------------------------------------------------
# Eval templates: three per type, worded independently of the train templates.
# ---------------------------------------------------------------------------------------------
EVAL_TEMPLATES: tuple[Template, ...] = (
    # confidentiality
    t(
        "confidentiality",
        (CS, LE, EY, SC, EM),
        """All non-public material that the {X} makes available under {agr} is to be treated by
        the {O} as secret. The {O} may copy such material only as strictly necessary, must store
        it securely, and may reveal it only where compelled by law, in which case the {O} must
        first give the {X} {bdn} warning where legally permitted.""",
        """The {O} must treat the {X}'s non-public material as secret and warn the {X} before
        any legally compelled disclosure.""",
    ),
    t(
        "confidentiality",
        (SC, LR, LD, EM),
        """Neither the {O} nor the {X} will publish, share or exploit any commercially sensitive
        data received from the other during the term, and this restriction continues for {y1}
        once {agr} ends. Information that was already public, or that was developed
        independently without use of the data, falls outside this restriction.""",
        """Neither party may share or exploit the other's sensitive data during the term or for
        {y1s} after it ends.""",
        mutual=True,
    ),
    t(
        "confidentiality",
        (EY,),
        """Upon leaving the Employer's service, the Employee remains bound to silence regarding
        formulas, source code, supplier terms and strategic plans learned while employed, with
        no time limit, and must hand back every laptop, file and access card belonging to the
        Employer no later than {bd} after the last working day.""",
        """The Employee must keep the Employer's secrets indefinitely after leaving and return
        all company property within {bds}.""",
    ),
    # termination
    t(
        "termination",
        (SC, LR, LD),
        """Should one party become insolvent, enter into liquidation, have a receiver appointed
        over its assets or cease to carry on business, the other party is entitled to bring
        {agr} to an end by written notice taking effect {bd} after delivery. This right is
        available to both the {O} and the {X}.""",
        """Both parties may end {agr_s} by notice, effective after {bds}, if the other becomes
        insolvent or stops trading.""",
        mutual=True,
    ),
    t(
        "termination",
        (CS, LE, TN),
        """Where the {O} wishes to bring {agr} to a close before the end of the term, it must
        inform the {X} in writing at least {d1} beforehand and settle every outstanding invoice,
        together with a break fee of {amt}, before the closing date. No other ground for early
        exit is available to the {O}.""",
        """The {O} may exit {agr_s} early only on {d1sn} written notice, settling all invoices
        and a break fee of {amt}.""",
    ),
    t(
        "termination",
        (EY, LE),
        """Once this arrangement has ended, the {O} is required to hand over all records,
        passwords and materials belonging to the {X}, stop representing any continuing
        connection with the {X} to third parties, and wipe any stored copies of data owned by
        the {X} from personal and business devices within {bd}.""",
        """After {agr_s} ends, the {O} must hand over the {X}'s materials, stop claiming a
        connection, and delete its data within {bds}.""",
    ),
    # payment
    t(
        "payment",
        (CS, LE, TN),
        """Sums falling due to the {X} must be settled by the {O} in full no later than {d1}
        after an invoice is received, in {cur}, to the bank account the {X} designates. Late
        sums attract a charge of {rate} until cleared, and the {O} bears its own bank transfer
        costs.""",
        """The {O} must settle the {X}'s invoices within {d1s} in {cur} and pay a {rate} charge
        on late sums.""",
    ),
    t(
        "payment",
        (EM,),
        """In return for the work performed, the Employer will remit to the Employee {salary}
        per year, split into equal amounts and credited every {period} to the account the
        Employee nominates, after withholding any taxes the law obliges the Employer to
        withhold. Overtime is not separately remunerated.""",
        """The Employer must pay the Employee {salary} a year in equal instalments, after
        withholding required taxes.""",
    ),
    t(
        "payment",
        (LE, TN),
        """On top of any fixed charges, the {O} will hand over to the {X} {pct} of its gross
        receipts for every calendar quarter, supported by a sales report verified by an
        independent accountant, with the money arriving in the {X}'s account within {d1} of the
        quarter's close.""",
        """The {O} must pay the {X} {pct} of quarterly gross receipts within {d1s} of quarter
        end with a verified sales report.""",
    ),
    # indemnification
    t(
        "indemnification",
        (SC, LR),
        """Should any outside party allege that anything delivered under {agr} violates its
        patent, copyright or trade secret, the {O} will take over the defence at its own expense
        and pay any settlement or award, and may at its option obtain a licence or modify the
        affected items, with the {X} providing reasonable assistance within {bd} of a request.""",
        """The {O} must defend third-party infringement allegations about its deliverables at
        its own cost and pay resulting settlements or awards.""",
    ),
    t(
        "indemnification",
        (CS, LE, TN),
        """The {O} will compensate the {X} in full for any fine, penalty, claim or expense the
        {X} suffers because the {O} or its contractors failed to comply with environmental,
        health and safety or export control rules. This protection is not subject to any cap,
        but claims must be raised within {m1} of discovery.""",
        """The {O} must fully compensate the {X} for fines and claims caused by its regulatory
        non-compliance, without any cap.""",
    ),
    t(
        "indemnification",
        (SC, LD, LR),
        """The {O} and the {X} each agree to make good any loss suffered by the other that
        results from the fraud, wilful misconduct or gross negligence of its own personnel, with
        the compensating party also bearing the reasonable legal costs of the other, up to a
        ceiling of {amt}.""",
        """Each party must compensate the other for losses from its own personnel's fraud,
        wilful misconduct or gross negligence.""",
        mutual=True,
    ),
    # limitation_of_liability
    t(
        "limitation_of_liability",
        (SC, LR),
        """However a claim arises, the most the {X} can recover from the {O} in total is {pct2}
        of the charges payable in the contract year when the claim arose. The {O} accepts no
        responsibility for lost data, lost profits or business interruption, whatever the cause.""",
        """The {O}'s total liability is capped at {pct2s} of the year's charges and excludes
        lost data, profits and business interruption.""",
    ),
    t(
        "limitation_of_liability",
        (SC, LR, LD),
        """The {O} and the {X} agree that neither of them will be responsible to the other for
        remote or indirect harm, including reputational damage and wasted management time, and
        that the overall exposure of each side is limited to {amt}, save in cases of deliberate
        default.""",
        """Both parties exclude liability for indirect harm and limit each side's total exposure
        to {amt}, except for deliberate default.""",
        mutual=True,
    ),
    t(
        "limitation_of_liability",
        (SC, LR),
        """Any responsibility of the {O} for defects in {subject} is confined to repairing or
        replacing the defective item, or refunding the amount paid for it if repair proves
        impossible, and in no case shall compensation payable by the {O} to the {X} exceed
        {amt}.""",
        """The {O}'s liability for defects is limited to repair, replacement or refund and never
        exceeds {amt}.""",
    ),
    # governing_law
    t(
        "governing_law",
        (SC, LR, EM, LD),
        """The rights and duties of the {O} and the {X} under {agr} are to be determined solely
        according to the law in force in {law}. Any court action relating to {agr} may only be
        started before {courts}, to whose authority both parties consent.""",
        """Both parties agree that the law of {law} applies and that only {courts} may hear
        disputes.""",
        mutual=True,
    ),
    t(
        "governing_law",
        (SC, LR),
        """Questions about the validity, meaning or performance of {agr} will be decided under
        the legal system of {law}. Before litigating, the {O} and the {X} shall attempt
        mediation for {d1}; if that fails, either of them may refer the matter to arbitration in
        {seat}.""",
        """{Agr_s} is decided under the law of {law}, with mediation for {d1s} before
        arbitration in {seat}.""",
        mutual=True,
    ),
    t(
        "governing_law",
        (EY, CS),
        """By signing, the {O} consents that the law of {law} alone governs this relationship
        and undertakes not to commence any claim against the {X} outside {courts}, accepting
        that judgments from that forum may be enforced against the {O} elsewhere.""",
        """The {O} accepts the law of {law} and must not sue the {X} outside {courts}.""",
    ),
    # assignment
    t(
        "assignment",
        (SC, LR, LD),
        """Without the written agreement of the counterparty, neither the {O} nor the {X} is
        permitted to hand over, sell or mortgage its position under {agr} to someone else, save
        that a transfer to a wholly owned group company is allowed if notified {bd} in advance.""",
        """Both parties need the other's written agreement to transfer their position, except
        transfers to group companies notified {bds} in advance.""",
        mutual=True,
    ),
    t(
        "assignment",
        (LE, CS, TN),
        """The benefit of {agr} belongs to the {O} alone. Any attempt by the {O} to pass on its
        rights to a buyer, merger partner or other successor requires the express approval of
        the {X} in advance, and the {X} may make that approval conditional on payment of a
        transfer fee of {amt}.""",
        """The {O} cannot pass its rights to any successor without the {X}'s advance approval,
        which may require a transfer fee of {amt}.""",
    ),
    t(
        "assignment",
        (SC, LR),
        """Duties accepted by the {O} under {agr} must be performed by the {O} itself or by its
        own staff; no portion of that work may be handed to an outside contractor, agency or
        freelancer unless the {X} agrees by email at least {bd} in advance.""",
        """The {O} must perform its duties itself and may not hand work to outside contractors
        without the {X}'s advance agreement.""",
    ),
    # non_compete
    t(
        "non_compete",
        (EY,),
        """Having had access to the Employer's client relationships, the Employee agrees that
        for {m1} after leaving, the Employee will not set up, join or advise any rival
        enterprise operating within {region}, whether as owner, partner, consultant or employee.""",
        """The Employee must not set up, join or advise a rival business within {regions} for
        {m1s} after leaving.""",
    ),
    t(
        "non_compete",
        (SC, LE),
        """So long as {agr} remains in force and for {m1} after it ends, the {O} is barred from
        developing, marketing or selling within {region} any offering that rivals those of the
        {X}, and from luring away any of the {X}'s distributors.""",
        """The {O} must not develop or sell offerings rivalling the {X}'s within {regions}
        during the term and for {m1s} after.""",
    ),
    t(
        "non_compete",
        (LD,),
        """Throughout the term, the Landlord undertakes to refuse any new tenancy within the
        same retail park to an operator whose main trade is {goods}, thereby protecting the
        Tenant's exclusive trading position. A breach entitles the Tenant to a {pct} reduction
        in rent until it is cured.""",
        """The Landlord must not grant any new tenancy in the retail park to an operator mainly
        trading in {goods}.""",
    ),
    # force_majeure
    t(
        "force_majeure",
        (SC, LR, LD),
        """If an occurrence outside anyone's reasonable influence, such as a pandemic, a cyber
        attack on national infrastructure, an embargo or a volcanic eruption, stops the {O} or
        the {X} from keeping its promises, the affected side's obligations are put on hold while
        it lasts, and once {m1} pass, either of them may cancel {agr}.""",
        """Both parties' obligations pause during events beyond their control, and either may
        cancel if the event lasts {m1s}.""",
        mutual=True,
    ),
    t(
        "force_majeure",
        (SC, LR),
        """The {O} will not be treated as in default where shipping blockades, cyber incidents
        at its hosting provider or sudden export bans prevent timely performance, on condition
        that the {O} informs the {X} within {bd}, explains the expected duration, and
        reschedules performance as soon as practicable.""",
        """The {O} is not in default for disruptions beyond its control if it informs the {X}
        within {bds} and reschedules promptly.""",
    ),
    t(
        "force_majeure",
        (TN, CS),
        """Even where an extraordinary event such as a riot, flood or nationwide lockdown
        disrupts its trade, the {O} remains bound to pay every amount owed to the {X} on the
        scheduled dates; only non-monetary duties may be deferred, and then for no longer than
        {m1}.""",
        """The {O} must still pay all amounts on time during extraordinary events, deferring
        only non-monetary duties for up to {m1s}.""",
    ),
    # warranty
    t(
        "warranty",
        (SC,),
        """Every item shipped by the Supplier is guaranteed to match the agreed drawings and to
        remain fit for the purpose notified by the Customer for {m1} after installation; items
        failing within that time will be exchanged or put right by the Supplier without charge,
        including freight.""",
        """The Supplier guarantees shipped items match the drawings and stay fit for purpose for
        {m1s}, fixing failures free of charge.""",
    ),
    t(
        "warranty",
        (LR, SC),
        """The {O} gives its assurance to the {X} that nothing supplied under {agr} contains
        viruses, time bombs or other harmful code, and that no open source component has been
        included in a way that would force the {X} to publish its own source code. Breaches must
        be reported within {d1}.""",
        """The {O} assures the {X} that its deliverables contain no harmful code or restrictive
        open source components.""",
    ),
    t(
        "warranty",
        (LD,),
        """On handover, the Landlord stands behind the condition of the heating, electrical and
        drainage installations in the Premises and confirms they comply with current
        regulations; any fault reported within {m1} of handover will be corrected by the
        Landlord at its own expense.""",
        """The Landlord guarantees the Premises' installations comply with regulations and will
        fix faults reported within {m1s} of handover.""",
    ),
    # intellectual_property
    t(
        "intellectual_property",
        (EY,),
        """Anything the Employee invents, writes or designs while on the Employer's time or
        using the Employer's equipment becomes the property of the Employer from the moment it
        comes into existence; the Employee waives all moral rights in such output and will sign
        confirmatory paperwork within {bd} when asked.""",
        """The Employee must give the Employer ownership of everything created on company time
        or equipment and waive moral rights.""",
    ),
    t(
        "intellectual_property",
        (LE,),
        """Title to {subject} never passes to the Licensee. The Licensee is forbidden from
        translating, adapting, disassembling or building competing products from {subject}, and
        must reproduce the Licensor's copyright legends on every permitted backup copy, of which
        no more than {n} may exist at any time.""",
        """The Licensee does not own {subject} and must not adapt, disassemble or build
        competing products from it.""",
    ),
    t(
        "intellectual_property",
        (SC, LR),
        """The {O} confirms that ownership of all bespoke reports, code and artwork produced for
        the {X} under {agr} transfers to the {X} once the final invoice of {amt} is settled, and
        the {O} will not reuse those items for any other client.""",
        """The {O} must transfer ownership of bespoke work to the {X} once paid and not reuse it
        for other clients.""",
    ),
    # notice
    t(
        "notice",
        (SC, LR, EM),
        """Communications that {agr} requires to be formal are effective only if written, signed
        by an authorised signatory and sent to the recipient's contact details shown on the
        cover page; either the {O} or the {X} may update those details by giving notice in the
        same manner at least {bd} beforehand.""",
        """Both parties must send formal communications in signed writing to the listed contact
        details, updating them at least {bds} ahead.""",
        mutual=True,
    ),
    t(
        "notice",
        (SC, LE, TN),
        """Whenever the {O} intends to rely on any right under {agr}, it must inform the {X} by
        courier letter addressed to the legal department of the {X}, with an electronic copy to
        the nominated contact; messages through chat tools or text messages are of no effect.
        Courier letters count as delivered {bd} after dispatch.""",
        """The {O} must send formal notices to the {X}'s legal department by courier with an
        email copy, not chat or text.""",
    ),
    t(
        "notice",
        (EY, CS, EM),
        """Should the {O} change {its} postal address, telephone number or email address, the
        {O} must update the {X} within {bd}; any communication sent to the last address held on
        file will otherwise be treated as properly delivered to the {O}.""",
        """The {O} must update the {X} within {bds} of changing contact details, or notices to
        old details still count.""",
    ),
)

# ---------------------------------------------------------------------------------------------
# Slot values.
# ---------------------------------------------------------------------------------------------
AGREEMENTS: dict[frozenset[str], tuple[str, ...]] = {
    frozenset(SC): ("this Agreement", "the Supply Agreement", "the Services Agreement"),
    frozenset(LR): ("this Agreement", "the Licence Agreement", "this Licence"),
    frozenset(EM): ("this Agreement", "the Employment Contract", "the Employment Agreement"),
    frozenset(LD): ("this Lease",),
}
SUBJECTS: dict[frozenset[str], tuple[str, ...]] = {
    frozenset(SC): ("the Services", "the Goods", "the Deliverables"),
    frozenset(LR): ("the Licensed Software", "the Platform", "the Licensed Technology"),
    frozenset(EM): ("the Employee's work",),
    frozenset(LD): ("the Premises",),
}
CURRENCIES = {
    "USD": "US dollars",
    "EUR": "euros",
    "GBP": "pounds sterling",
    "CHF": "Swiss francs",
    "AUD": "Australian dollars",
    "CAD": "Canadian dollars",
    "SGD": "Singapore dollars",
    "JPY": "Japanese yen",
    "NZD": "New Zealand dollars",
    "SEK": "Swedish kronor",
}
AMOUNTS: tuple[int, ...] = (
    5000,
    7500,
    10000,
    12500,
    20000,
    25000,
    40000,
    50000,
    75000,
    100000,
    150000,
    250000,
    400000,
    500000,
    1000000,
    2000000,
)
SALARIES = (32000, 38500, 42000, 47500, 55000, 61000, 68000, 74500, 82000, 95000, 120000)
RENTS = (18000, 24000, 36000, 48500, 60000, 85000, 120000, 175000, 240000)
RATES = (
    "1% per month",
    "1.5% per month",
    "2% per month",
    "8% per annum",
    "10% per annum",
    "4% per annum above the central bank base rate",
)
PCTS = ("3%", "4%", "5%", "6%", "7.5%", "8%", "10%", "12%", "15%")
CAP_PCTS = (
    ("one hundred percent (100%)", "100%"),
    ("one hundred and twenty-five percent (125%)", "125%"),
    ("one hundred and fifty percent (150%)", "150%"),
    ("two hundred percent (200%)", "200%"),
)
LAWS = (
    ("England and Wales", "the courts of England and Wales"),
    ("the State of New York", "the state and federal courts in New York County"),
    ("Ontario", "the courts of the Province of Ontario"),
    ("Singapore", "the courts of Singapore"),
    ("Germany", "the regional court of Munich"),
    ("the Netherlands", "the district court of Amsterdam"),
    ("New South Wales", "the courts of New South Wales"),
    ("the State of Delaware", "the courts of the State of Delaware"),
    ("Ireland", "the courts of Dublin"),
    ("Scotland", "the Court of Session in Edinburgh"),
    ("the State of California", "the courts of San Francisco County"),
    ("Switzerland", "the courts of the Canton of Zurich"),
    ("Sweden", "the Stockholm District Court"),
    ("Hong Kong", "the courts of Hong Kong"),
)
SEATS = (
    ("London", "the London Court of International Arbitration"),
    ("Singapore", "the Singapore International Arbitration Centre"),
    ("Paris", "the International Chamber of Commerce"),
    ("Stockholm", "the Arbitration Institute of the Stockholm Chamber of Commerce"),
    ("Geneva", "the Swiss Arbitration Centre"),
    ("Hong Kong", "the Hong Kong International Arbitration Centre"),
    ("Vienna", "the Vienna International Arbitral Centre"),
)
REGIONS = (
    ("fifty (50) kilometres of Leeds", "50 kilometres of Leeds"),
    ("twenty-five (25) miles of Austin, Texas", "25 miles of Austin, Texas"),
    ("the Province of Quebec", "the Province of Quebec"),
    ("the European Economic Area", "the European Economic Area"),
    ("the Republic of Ireland", "the Republic of Ireland"),
    ("Greater Manchester", "Greater Manchester"),
    ("the State of Victoria", "the State of Victoria"),
    ("one hundred (100) kilometres of Rotterdam", "100 kilometres of Rotterdam"),
    ("the Nordic countries", "the Nordic countries"),
    ("the Greater Toronto Area", "the Greater Toronto Area"),
    ("thirty (30) miles of Bristol", "30 miles of Bristol"),
)
GOODS = (
    "coffee and hot beverages",
    "pharmaceutical products",
    "sporting goods",
    "mobile phones and accessories",
    "children's clothing",
    "frozen food",
    "books and stationery",
    "optical goods",
)
USES = (
    "offices",
    "a restaurant",
    "a retail shop",
    "a warehouse",
    "a medical clinic",
    "a dental surgery",
    "a gym",
)
ORDINALS = ("second", "third", "fifth")
PERIODS = ("month", "four weeks", "fortnight")
NUM_WORDS = {
    1: "one",
    2: "two",
    3: "three",
    5: "five",
    6: "six",
    7: "seven",
    9: "nine",
    10: "ten",
    12: "twelve",
    14: "fourteen",
    18: "eighteen",
    21: "twenty-one",
    24: "twenty-four",
    30: "thirty",
    45: "forty-five",
    60: "sixty",
    90: "ninety",
}


def plural(n: int, unit: str) -> str:
    return unit if n == 1 else unit + "s"


def duration(rng: random.Random, choices: tuple[int, ...], unit: str) -> tuple[str, str]:
    """A duration in clause form (often 'thirty (30) days') and summary form ('30 days')."""
    n = rng.choice(choices)
    short = f"{n} {plural(n, unit)}"
    words = f"{NUM_WORDS[n]} ({n}) {plural(n, unit)}"
    return (words if rng.random() < 0.6 else short), short


def possessive(text: str) -> str:
    """'30 days' -> '30 days'', '1 month' -> '1 month's', as in '30 days' notice'."""
    return text + "'" if text.endswith("s") else text + "'s"


def money(rng: random.Random, pool: tuple[int, ...], code: str) -> str:
    value = rng.choice(pool)
    if code == "JPY":
        value *= 100
    return f"{code} {value:,}"


def fill_slots(rng: random.Random, tpl: Template, pair: tuple[str, str]) -> dict[str, str]:
    key = frozenset(pair)
    agr = rng.choice(AGREEMENTS[key])
    agr_s = "the " + agr.split(" ", 1)[1].lower()
    code = rng.choice(sorted(CURRENCIES))
    law, courts = rng.choice(LAWS)
    seat, inst = rng.choice(SEATS)
    region, regions = rng.choice(REGIONS)
    pct2, pct2s = rng.choice(CAP_PCTS)
    slots = {"O": pair[0], "X": pair[1], "agr": agr, "agr_s": agr_s}
    slots["Agr"] = agr[0].upper() + agr[1:]
    slots["Agr_s"] = agr_s[0].upper() + agr_s[1:]
    slots["subject"] = rng.choice(tpl.subjects or SUBJECTS[key])
    slots["its"] = "their" if pair[0] == "Employee" else "its"
    slots["d1"], slots["d1s"] = duration(rng, (14, 21, 30, 45, 60, 90), "day")
    slots["bd"], slots["bds"] = duration(rng, (2, 3, 5, 7, 10), "business day")
    slots["m1"], slots["m1s"] = duration(rng, (3, 6, 9, 12, 18, 24), "month")
    slots["mn"], slots["mns"] = duration(rng, (1, 2, 3, 6), "month")
    slots["y1"], slots["y1s"] = duration(rng, (1, 2, 3, 5), "year")
    for name in ("d1", "d1s", "bd", "bds", "mn", "mns"):
        slots[name + "n"] = possessive(slots[name])
    n = rng.choice((2, 3, 5, 10))
    slots["n"] = f"{NUM_WORDS[n]} ({n})"
    slots["amt"] = money(rng, AMOUNTS, code)
    slots["salary"] = money(rng, SALARIES, code)
    slots["rent"] = money(rng, RENTS, code)
    slots["cur"] = CURRENCIES[code]
    slots["rate"] = rng.choice(RATES)
    slots["pct"] = rng.choice(PCTS)
    slots.update(pct2=pct2, pct2s=pct2s, law=law, courts=courts, seat=seat, inst=inst)
    slots.update(region=region, regions=regions)
    slots["goods"] = rng.choice(GOODS)
    slots["use"] = rng.choice(USES)
    slots["ordinal"] = rng.choice(ORDINALS)
    slots["period"] = rng.choice(PERIODS)
    slots["freq"] = rng.choice(("quarterly", "monthly"))
    slots["sched"] = str(rng.randint(1, 4))
    slots["year"] = str(rng.randint(2019, 2024))
    return slots


CHOICE = re.compile(r"\[\[(.*?)\]\]")
NUMBER_IN_WORDS = re.compile(r"\b[a-z-]+ \((\d+)\)")


def normalise(clause: str) -> str:
    """Collapse 'thirty (30)' to '30' so clauses differing only in number style count as equal."""
    return NUMBER_IN_WORDS.sub(r"\1", clause)


def render(rng: random.Random, text: str, slots: dict[str, str]) -> str:
    text = CHOICE.sub(lambda m: rng.choice(m.group(1).split("|")), text)
    return text.format(**slots)


def make_split(
    rng: random.Random, split: str, templates: tuple[Template, ...]
) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for type_ in TYPES:
        group = [tpl for tpl in templates if tpl.type == type_]
        # Spread the type's rows over its templates as evenly as possible.
        order = [group[i % len(group)] for i in range(ROWS_PER_TYPE[split])]
        pair_cycles = {id(tpl): rng.sample(tpl.pairs, len(tpl.pairs)) for tpl in group}
        uses: Counter[int] = Counter()
        for tpl in order:
            cycle = pair_cycles[id(tpl)]
            pair = cycle[uses[id(tpl)] % len(cycle)]
            uses[id(tpl)] += 1
            for _ in range(100):
                slots = fill_slots(rng, tpl, pair)
                clause = render(rng, tpl.clause, slots)
                if normalise(clause) not in seen:
                    break
            else:
                raise RuntimeError(f"could not make a distinct clause from {tpl.clause[:60]!r}")
            seen.add(normalise(clause))
            summary = render(rng, tpl.summary, slots)
            obligor = "both" if tpl.mutual else pair[0]
            rows.append({"clause": clause, "type": type_, "obligor": obligor, "summary": summary})
    rng.shuffle(rows)
    out = []
    for i, row in enumerate(rows, 1):
        target = json.dumps(
            {"type": row["type"], "obligor": row["obligor"], "summary": row["summary"]}
        )
        out.append({"id": f"legal-{split}-{i:04d}", **row, "target": target})
    return out


# ---------------------------------------------------------------------------------------------
# Checks.
# ---------------------------------------------------------------------------------------------
def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:['.-][a-z0-9]+)*", text.lower())


def spans(text: str, n: int = SPAN) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


MUTUAL_MARKERS = (
    "each party",
    "either party",
    "neither party",
    "both parties",
    "neither the ",
    "either the ",
    "both the ",
    "the parties",
    "each agree",
    "either of them",
    "each side",
)


def check(splits: dict[str, list[dict[str, str]]]) -> list[str]:
    problems: list[str] = []
    keys = ["id", "clause", "type", "obligor", "summary", "target"]
    all_clauses: Counter[str] = Counter()
    for split, rows in splits.items():
        expected = {"train": 180, "eval": 72}[split]
        if len(rows) != expected:
            problems.append(f"{split}: {len(rows)} rows, expected {expected}")
        for i, row in enumerate(rows, 1):
            rid = row.get("id", f"{split}#{i}")
            if list(row) != keys:
                problems.append(f"{rid}: keys {list(row)}")
                continue
            if row["id"] != f"legal-{split}-{i:04d}":
                problems.append(f"{rid}: id out of sequence")
            if row["type"] not in TYPES:
                problems.append(f"{rid}: bad type {row['type']}")
            if row["obligor"] not in OBLIGORS:
                problems.append(f"{rid}: bad obligor {row['obligor']}")
            target = {"type": row["type"], "obligor": row["obligor"], "summary": row["summary"]}
            if row["target"] != json.dumps(target) or json.loads(row["target"]) != target:
                problems.append(f"{rid}: target does not match fields")
            n_clause = len(row["clause"].split())
            if not CLAUSE_WORDS[0] <= n_clause <= CLAUSE_WORDS[1]:
                problems.append(f"{rid}: clause has {n_clause} words")
            summ = row["summary"]
            n_summ = len(summ.split())
            if not SUMMARY_WORDS[0] <= n_summ <= SUMMARY_WORDS[1]:
                problems.append(f"{rid}: summary has {n_summ} words")
            if not summ.endswith(".") or '"' in summ or summ.count(". ") > 0:
                problems.append(f"{rid}: summary is not one plain sentence: {summ!r}")
            if not (row["clause"] + summ).isascii() or "{" in row["clause"] + summ:
                problems.append(f"{rid}: non-ASCII text or unfilled slot")
            low = row["clause"].lower()
            if row["obligor"] == "both":
                if not any(m in low for m in MUTUAL_MARKERS):
                    problems.append(f"{rid}: obligor both but no mutual wording in clause")
            elif f"the {row['obligor'].lower()}" not in low:
                problems.append(f"{rid}: obligor {row['obligor']} not named in clause")
            all_clauses[normalise(row["clause"])] += 1
        counts = Counter(r["type"] for r in rows)
        for type_ in TYPES:
            if counts[type_] < 4:
                problems.append(f"{split}: only {counts[type_]} rows of {type_}")
    problems += [f"duplicate clause: {c[:60]!r}" for c, k in all_clauses.items() if k > 1]
    train_spans: set[tuple[str, ...]] = set()
    for row in splits.get("train", []):
        train_spans |= spans(row["clause"])
    for row in splits.get("eval", []):
        shared = spans(row["clause"]) & train_spans
        if shared:
            problems.append(
                f"{row['id']}: shares a {SPAN}-word span with train: {sorted(shared)[0]}"
            )
    return problems


def report(splits: dict[str, list[dict[str, str]]]) -> None:
    for split, rows in splits.items():
        lengths = [len(r["clause"].split()) for r in rows]
        print(
            f"{split}: {len(rows)} rows, clause words min {min(lengths)} max {max(lengths)} "
            f"mean {sum(lengths) / len(lengths):.1f}"
        )
        by_type = Counter(r["type"] for r in rows)
        print("  types:   " + ", ".join(f"{k}={by_type[k]}" for k in TYPES))
        by_obl = Counter(r["obligor"] for r in rows)
        print("  obligor: " + ", ".join(f"{k}={by_obl[k]}" for k in OBLIGORS if by_obl[k]))


def read_jsonl(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="check the files, do not write")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    for templates, per_type in ((TRAIN_TEMPLATES, 5), (EVAL_TEMPLATES, 3)):
        assert Counter(tpl.type for tpl in templates) == dict.fromkeys(TYPES, per_type)
    if args.check:
        splits = {s: read_jsonl(args.out / f"{s}.jsonl") for s in ("train", "eval")}
    else:
        rng = random.Random(SEED)
        splits = {
            "train": make_split(rng, "train", TRAIN_TEMPLATES),
            "eval": make_split(rng, "eval", EVAL_TEMPLATES),
        }
    problems = check(splits)
    report(splits)
    for p in problems:
        print("PROBLEM:", p)
    if problems:
        return 1
    if not args.check:
        for split, rows in splits.items():
            write_jsonl(args.out / f"{split}.jsonl", rows)
        print(f"wrote {args.out}/train.jsonl and {args.out}/eval.jsonl")
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
