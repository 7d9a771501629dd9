"""Word tables for the synthetic corpus: names, partner firms, places, projects, phrasing.

All tables are plain tuples so the generator can index them with ``random.Random``;
every value here is fictional.
"""
from __future__ import annotations

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
    "Sarah", "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty",
    "Mark", "Margaret", "Donald", "Sandra", "Steven", "Ashley", "Paul", "Kimberly", "Andrew",
    "Emily", "Joshua", "Donna", "Kenneth", "Michelle", "Kevin", "Carol", "Brian", "Amanda",
    "George", "Melissa", "Timothy", "Deborah", "Ronald", "Stephanie", "Edward", "Rebecca",
    "Jason", "Sharon", "Jeffrey", "Laura", "Ryan", "Cynthia", "Jacob", "Kathleen", "Gary",
    "Amy", "Nicholas", "Angela", "Eric", "Shirley", "Jonathan", "Anna", "Stephen", "Brenda",
    "Larry", "Pamela", "Justin", "Emma", "Scott", "Nicole", "Brandon", "Helen", "Benjamin",
    "Samantha", "Samuel", "Katherine", "Gregory", "Christine", "Frank", "Debra", "Alexander",
    "Rachel", "Raymond", "Carolyn", "Patrick", "Janet", "Jack", "Catherine", "Dennis",
    "Maria", "Jerry", "Heather", "Tyler", "Diane", "Aaron", "Ruth", "Jose", "Julie", "Adam",
    "Olivia", "Nathan", "Joyce", "Henry", "Virginia", "Douglas", "Victoria", "Zachary",
    "Kelly", "Peter", "Lauren", "Kyle", "Christina", "Walter", "Joan", "Ethan", "Evelyn",
    "Harold", "Judith", "Carl", "Megan", "Arthur", "Andrea", "Gerald", "Cheryl", "Roger",
    "Hannah", "Keith", "Jacqueline", "Jeremy", "Martha", "Terry", "Gloria", "Lawrence",
    "Teresa", "Sean", "Ann", "Christian", "Sara", "Albert", "Madison", "Joe", "Frances",
)

LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
    "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
    "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
    "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen",
    "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams",
    "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez",
    "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes",
    "Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz",
    "Morgan", "Cooper", "Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim",
    "Cox", "Ward", "Richardson", "Watson", "Brooks", "Chavez", "Wood", "James", "Bennett",
    "Gray", "Mendoza", "Ruiz", "Hughes", "Price", "Alvarez", "Castillo", "Sanders", "Patel",
    "Myers", "Long", "Ross", "Foster", "Jimenez", "Powell", "Jenkins", "Perry", "Russell",
    "Sullivan", "Bell", "Coleman", "Butler", "Henderson", "Barnes", "Gonzales", "Fisher",
    "Vasquez", "Simmons", "Romero", "Jordan", "Patterson", "Alexander", "Hamilton", "Graham",
    "Reynolds", "Griffin", "Wallace", "Moreno", "West", "Cole", "Hayes", "Bryant", "Herrera",
    "Gibson", "Ellis", "Tran", "Medina", "Aguilar", "Stevens", "Murray", "Ford", "Castro",
    "Marshall", "Owens", "Harrison", "Fernandez", "McDonald", "Woods", "Washington", "Kennedy",
)

# (company name, e-mail domain) of the fictional employer; the seed picks one.
COMPANIES = (
    ("Halvorsen Energy Trading", "halvorsen-energy.com"),
    ("Brightwater Power & Gas", "brightwater-pg.com"),
    ("Meridian Commodities Group", "meridian-cg.com"),
    ("Ironbridge Energy Services", "ironbridge-energy.com"),
)

DEPARTMENTS = (
    ("Gas Trading", ("Trader", "Senior Trader", "Scheduler", "Desk Head")),
    ("Power Trading", ("Trader", "Analyst", "Scheduler", "Desk Head")),
    ("Structured Finance", ("Associate", "Vice President", "Analyst")),
    ("Legal", ("Counsel", "Senior Counsel", "Paralegal")),
    ("Accounting", ("Accountant", "Controller", "Accounts Payable Specialist")),
    ("Risk Management", ("Risk Analyst", "Credit Officer", "Director of Risk")),
    ("Operations", ("Operations Manager", "Logistics Coordinator", "Site Supervisor")),
    ("Information Technology", ("Systems Engineer", "IT Manager", "Developer")),
    ("Human Resources", ("HR Generalist", "Recruiter", "HR Director")),
    ("Regulatory Affairs", ("Regulatory Analyst", "Director of Government Affairs")),
)

# (partner firm, e-mail domain).
PARTNERS = (
    ("Kestrel Power", "kestrelpower.com"), ("Bluestem Pipeline", "bluestempipe.com"),
    ("Cardinal Gas Marketing", "cardinalgas.com"), ("Northgate Utilities", "northgate-util.com"),
    ("Sable Creek Energy", "sablecreek.com"), ("Tidewater Storage", "tidewaterstorage.com"),
    ("Granite Peak Resources", "granitepeak.com"), ("Lone Cypress Refining", "lonecypress.com"),
    ("Redhawk Midstream", "redhawkmid.com"), ("Silver Lake Electric", "silverlake-elec.com"),
    ("Pinecrest Municipal Power", "pinecrestpower.org"), ("Aldergrove Capital", "aldergrove.com"),
    ("Coastal Plains Transmission", "cptransmission.com"), ("Ember Ridge Wind", "emberridge.com"),
    ("Westmark Chemicals", "westmarkchem.com"), ("Harbor Point Logistics", "harborpoint.com"),
    ("Copperline Engineering", "copperline-eng.com"), ("Summit Valley Coop", "summitvalley.coop"),
    ("Blackwater Drilling", "blackwaterdrill.com"), ("Orion Metering", "orionmetering.com"),
    ("Falconer & Pryce LLP", "falconerpryce.com"), ("Tanager Insurance", "tanager-ins.com"),
    ("Riverbend Turbine Services", "riverbendturbine.com"), ("Oakhurst Bank", "oakhurstbank.com"),
)

CITIES = (
    "Houston", "Calgary", "Denver", "Chicago", "Omaha", "Portland", "Tulsa", "Dallas",
    "Austin", "New Orleans", "Phoenix", "San Antonio", "Oklahoma City", "Kansas City",
    "Pittsburgh", "Boston", "Atlanta", "Sacramento", "Salt Lake City", "Minneapolis",
    "Toronto", "London", "Oslo", "Aberdeen", "Singapore", "Mexico City", "Baton Rouge",
    "Midland", "Albuquerque", "Seattle",
)

SITES = (
    "Baytown terminal", "Pasadena plant", "Mont Belvieu hub", "Henry Hub station",
    "Katy storage field", "Carthage compressor station", "Waha header", "Opal plant",
    "Bammel storage field", "Corpus Christi dock", "Lake Charles terminal",
    "Port Arthur yard", "Cushing tank farm", "Midland gathering site", "Ignacio plant",
    "Perryville substation", "Moss Landing unit", "Palo Verde switchyard",
    "Beaumont warehouse", "Freeport pier", "Victoria compressor station", "Tioga field office",
)

ROOMS = (
    "Conference Room 4B", "Conference Room 12C", "the 32nd floor boardroom",
    "Conference Room 27A", "the Allen Street training room", "Conference Room 6D",
)

PROJECT_ADJECTIVES = (
    "Blue", "Silver", "Red", "Northern", "Iron", "Golden", "Swift", "Quiet", "Bright",
    "Stone", "Amber", "Crimson", "Hidden", "Rapid", "Eastern", "Copper", "Arctic", "Coral",
)
PROJECT_NOUNS = (
    "Falcon", "Harbor", "Mesa", "Cedar", "Comet", "Beacon", "Summit", "Prairie", "Anchor",
    "Bison", "Canyon", "Delta", "Ember", "Glacier", "Heron", "Lantern", "Orchard", "Raven",
    "Sparrow", "Timber",
)

SERVICES = (
    "firm transportation", "storage", "scheduling services", "consulting",
    "metering maintenance", "balancing services", "compression services", "legal services",
    "software licensing", "pipeline inspection",
)

EQUIPMENT = (
    "turbine overhaul", "compressor rebuild", "meter calibration", "valve replacement",
    "SCADA upgrade", "tank inspection", "transformer repair", "pipeline pigging",
    "control room refit", "fire suppression upgrade", "cooling tower repair",
    "backup generator install",
)

COMMODITIES = (
    ("natural gas", "MMBtu", (2.10, 9.80), (5_000, 60_000), "/day"),
    ("power", "MWh", (18.0, 310.0), (25, 400), " per hour"),
    ("crude oil", "bbl", (16.0, 34.0), (1_000, 30_000), "/day"),
    ("propane", "gallon", (0.38, 0.95), (20_000, 400_000), "/month"),
)

MEETING_TYPES = (
    "kickoff", "quarterly review", "contract negotiation", "site visit",
    "steering committee", "budget review", "risk review", "closing",
)

HOTELS = (
    "Westin Galleria", "Hyatt Regency", "Marriott Downtown", "Fairmont Palliser",
    "Hilton Garden Inn", "Omni Hotel", "Four Seasons", "Renaissance Hotel",
    "Sheraton Suites", "Doubletree Hotel", "Embassy Suites", "Crowne Plaza",
)

AIRLINES = ("Continental", "American", "Delta", "United", "Southwest", "Air Canada")

PHASES = ("Phase 1", "Phase 2", "Phase 3", "Phase 4")

GREETINGS = ("Hi {f},", "{f},", "Hello {f},", "Good morning {f},", "Hey {f},", "Dear {f},")
CLOSINGS = ("Thanks,", "Regards,", "Best,", "Thanks again,", "Cheers,", "Best regards,")

# Background chatter: (subject, body sentences). ``{p}`` is a partner, ``{j}`` a project.
CHATTER = (
    ("Lunch on Thursday?", ("Are you free for lunch on Thursday?",
                            "I was thinking of the Mexican place across the street.")),
    ("Parking garage closure", ("Reminder that the east parking garage is closed this weekend.",
                                "Please use the Milam Street entrance until further notice.")),
    ("Desk move", ("Facilities will move our desks to the 31st floor next week.",
                   "Please pack personal items by Friday afternoon.")),
    ("Fantasy football", ("Draft is Tuesday night at 7.", "Bring your own snacks this time.")),
    ("Call with {p}", ("Can we push the call with {p} to tomorrow morning?",
                       "Their team is still reviewing the draft term sheet.")),
    ("{j} status", ("Quick update on {j}: the team is still waiting on legal comments.",
                    "Nothing needs your attention yet.")),
    ("Weekly desk report", ("Attached is the weekly desk report.",
                            "Volumes were flat week over week; no new issues to flag.")),
    ("System outage tonight", ("IT will take the trading system down from 10pm to 2am.",
                               "Please log off before you leave for the day.")),
    ("Holiday party", ("The holiday party is at the usual place this year.",
                       "RSVP to the HR mailbox if you plan to bring a guest.")),
    ("Training session", ("There is a mandatory compliance training session next month.",
                          "Sign up through the HR site; sessions fill quickly.")),
    ("{p} credit line", ("Credit wants to take another look at {p} before we extend terms.",
                         "I told them we would send the latest financials.")),
    ("Market color", ("Cash prices were soft again this morning on mild weather.",
                      "Forward curve is flat; no reason to change our positions yet.")),
    ("Expense reports", ("Accounting needs expense reports by the 5th.",
                         "Late reports will roll into next month's cycle.")),
    ("Coffee machine", ("The coffee machine on 32 is broken again.",
                        "Someone from facilities is supposed to come by this afternoon.")),
    ("{j} staffing", ("We may need one more analyst on {j} next quarter.",
                      "Let me know if you have anyone in mind.")),
    ("{p} site tour", ("{p} asked whether we could host a site tour sometime next month.",
                       "I said we would check calendars and get back to them.")),
    ("Draft agenda", ("Here is a rough agenda for next week's offsite.",
                      "Feel free to add topics; nothing is final yet.")),
    ("Gas Daily article", ("Did you see the Gas Daily piece on storage levels?",
                           "Worth a read before the morning meeting.")),
    ("Conference in {c}", ("Is anyone from the group going to the industry conference in {c}?",
                           "Registration closes at the end of the month.")),
    ("New analyst starting", ("A new analyst joins the desk on Monday.",
                              "Please make time to walk them through the morning reports.")),
    ("{p} contact change", ("Our main contact at {p} is moving to a new role.",
                            "They promised an introduction to the replacement soon.")),
    ("Benefits enrollment", ("Open enrollment for benefits ends on Friday.",
                             "Changes after that date require a qualifying event.")),
    ("Re-org memo", ("The memo on the reorganization went out this morning.",
                     "Reporting lines for our group do not change.")),
    ("Trip report: {c}", ("Back from {c}; the meetings went fine.",
                          "I will write up notes for the team by Wednesday.")),
    ("{j} lessons learned", ("Can we get 30 minutes on the calendar to go over lessons "
                             "learned on {j}?", "Mornings are best for me.")),
    ("Printer on 31", ("The color printer on 31 is out of toner.",
                       "I put in a ticket with the help desk.")),
    ("Credit watch", ("Rating agencies put two of our counterparties on credit watch.",
                      "Risk will circulate the list with updated limits.")),
)

REPLY_LINES = (
    "Sounds good, thanks.", "Works for me.", "Thanks for the heads up.", "Will do.",
    "Got it, I'll take a look this afternoon.", "Can we discuss on the call tomorrow?",
    "Agreed. Let's keep it moving.", "I'll loop in the rest of the team.",
    "Thanks - forwarding to the desk.", "Noted.",
)

FORWARD_LINES = (
    "FYI - see below.", "Forwarding for your files.", "See below, please keep this handy.",
    "Passing this along in case it's useful.", "FYI, for the record.",
)

# Phrasings of each fact kind (``str.format`` fields are filled by ``synth_facts``). Every
# variant states every value, so any question about the email is answered by its text.
FACT_TEXT = {
    "invoice": (
        "Attached is invoice {inv} for {service} provided to {company} for {months} ({label}). "
        "The amount due is {amount}, payable by {due} (net 30). Please let me know if your "
        "accounting group needs anything else.",
        "Our invoice {inv} covering {service} for {label} ({months}) is attached. Total due: "
        "{amount}. Payment is due on or before {due}.",
        "Please find invoice {inv} for {label} {service}. The balance due is {amount}; terms "
        "are net 30, so payment is due {due}. Call me with any questions on the charges.",
    ),
    "meeting": (
        "The {kind} meeting for Project {project} is scheduled for {weekday}, {date} at {time} "
        "in {place}. Please send me any agenda items beforehand and confirm attendance.",
        "We are set for the Project {project} {kind} meeting: {weekday}, {date}, {time}, "
        "in {place}. Let me know if you cannot make it.",
        "Please hold {weekday}, {date} for the {kind} meeting on Project {project}. We start at "
        "{time} in {place}; lunch will be provided.",
    ),
    "deal": (
        "This confirms the {commodity} transaction with {partner} for {label} delivery at the "
        "{site}. Volume is {volume} at a fixed price of {price}. Deal number {number}. Please "
        "review and let us know of any discrepancies within two business days.",
        "Per our conversation, we have agreed to buy {volume} of {commodity} from {partner} for "
        "{label} at a fixed {price}, delivered at the {site}. The deal is entered as {number}.",
        "Deal {number} is booked: {partner}, {commodity}, {label} delivery at the {site}, "
        "{volume} at {price} fixed. Confirm back at your convenience.",
    ),
    "po": (
        "Purchase order {po} has been issued to {vendor} for the {item} at the {site}. The "
        "not-to-exceed amount is {amount} and the work must be finished by {finish}. Invoices "
        "should reference the PO number.",
        "{vendor} has been awarded the {item} at the {site} under {po}, with a "
        "not-to-exceed amount of {amount}. Completion is required by {finish}.",
        "FYI, we cut {po} to {vendor} for the {item} work at the {site}: not-to-exceed "
        "{amount}, finish date {finish}.",
    ),
    "travel": (
        "Your trip to {city} is booked. Confirmation code {code}. Departing {depart} on "
        "{flight}; {nights} nights at the {hotel}. Changes within 24 hours of departure incur "
        "a fee.",
        "Itinerary for {city}: {flight} departs {depart}. Hotel: {hotel}, {nights} nights. "
        "Your confirmation code is {code}.",
        "Travel to {city} is confirmed under code {code}. You fly out {depart} on {flight} "
        "and stay {nights} nights at the {hotel}.",
    ),
    "budget": (
        "The steering committee approved a budget of {budget} for {phase} of Project "
        "{project}. Target go-live is {golive}. Please charge time to cost center {cc}.",
        "Good news: {phase} of Project {project} is funded at {budget}. We are targeting "
        "go-live on {golive}; cost center {cc} is open for time and expenses.",
        "Budget for Project {project} {phase} came back approved at {budget}. Cost center "
        "{cc} is set up, and the go-live target is {golive}.",
    ),
}
