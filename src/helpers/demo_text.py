"""Words for the demo data: people's names, team names and survey comment templates.

Kept apart from :mod:`helpers.demo` so the generator reads as statistics. Comments are short, tied to
the rating that prompted them (tone from the overall CSAT, topic from the attribute the customer rated
furthest from their own average), and a few contain HTML-special characters (``<b>``, ``&``, a
``<script>`` tag, quotes) so that every report exercises its output escaping.
"""
from __future__ import annotations

FIRST_NAMES = (
    "Amelia", "Noah", "Olivia", "Liam", "Emma", "Oliver", "Ava", "Elijah", "Sophia", "Lucas",
    "Mia", "Mateo", "Isabella", "Levi", "Zoë", "José", "Aisha", "Mohammed", "Priya", "Arjun",
    "Chen", "Mei", "Yuki", "Haruto", "Fatima", "Omar", "Ingrid", "Lars", "Chloé", "Théo",
    "Siobhan", "Ciarán", "Grace", "Samuel", "Nia", "Kwame", "Lucía", "Diego", "Anna", "Jonas",
    "Hannah", "Ethan", "Leila", "Tomasz", "Agnieszka", "Kofi", "Sara", "Daniel", "Ruth", "Malik",
)

LAST_NAMES = (
    "Smith", "Johnson", "Garcia", "Müller", "O'Brien", "Nguyen", "Patel", "Kim", "Rossi", "Dubois",
    "Kowalski", "Andersson", "Okafor", "Mensah", "Silva", "Fernández", "Tanaka", "Sato", "Cohen", "Murphy",
    "Brown", "Wilson", "Taylor", "Martin", "Thompson", "White", "Harris", "Clarke", "Lewis", "Walker",
    "Young", "King", "Wright", "Hill", "Green", "Baker", "Adams", "Nelson", "Carter", "Mitchell",
    "Roberts", "Turner", "Phillips", "Campbell", "Parker", "Evans", "Edwards", "Collins", "Stewart", "Morris",
)

# what customers call the department in their own words
DEPARTMENT_NOUNS = {
    "customer_service": "customer service",
    "sales": "the sales team",
    "marketing": "your marketing",
    "delivery": "the delivery",
    "billing": "billing",
    "technical_support": "tech support",
}

# COMMENTS[tone][attribute] -> variants; "{who}" is replaced by the department noun
COMMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "negative": {
        "speed": (
            "Waited far too long for {who} to get back to me.",
            "Three days and still no answer from {who}. Unacceptable.",
            "So slow. I had to chase {who} twice.",
            "The wait on hold was over 40 minutes.",
        ),
        "resolution": (
            "My problem is still not fixed.",
            "{who} closed my case but nothing was solved.",
            "Had to call back again, same issue as last week.",
            "Nobody actually resolved anything.",
        ),
        "knowledge": (
            "The person from {who} did not seem to know the product.",
            "Got three different answers from three people.",
            "They read from a script and could not answer my question.",
            "I knew more about it than {who} did.",
        ),
        "courtesy": (
            "The agent was rude and cut me off.",
            "Felt like {who} did not care at all.",
            "Very unfriendly tone on the phone.",
            "I was made to feel stupid for asking.",
        ),
        "ease": (
            "Far too complicated, I had to repeat my details again and again.",
            "The website kept logging me out & I gave up.",
            "Why do I need to fill in the same form twice?",
            "Impossible to reach a human.",
        ),
        "value": (
            "Too expensive for what you get.",
            "I was charged more than I was quoted.",
            "Not worth the price any more.",
            "Hidden fees again. Thinking of leaving.",
        ),
    },
    "neutral": {
        "speed": (
            "It took a while but got there in the end.",
            "OK, a bit slow.",
            "Fine, though the wait could be shorter.",
        ),
        "resolution": (
            "Partly sorted, waiting for the rest.",
            "Issue fixed for now, we'll see if it lasts.",
            "Solved on the second try.",
        ),
        "knowledge": (
            "The agent had to check with a colleague but found the answer.",
            "Answer was correct but not very detailed.",
            "Average, nothing special.",
        ),
        "courtesy": (
            "Polite enough.",
            "Friendly but a bit rushed.",
            "No complaints about the staff.",
        ),
        "ease": (
            "The process was OK once I found the right page.",
            "A few too many steps, but it worked.",
            "Could be simpler.",
        ),
        "value": (
            "Price is about what I expected.",
            "Fair value, nothing more.",
            "OK for the money.",
        ),
    },
    "positive": {
        "speed": (
            "Super quick response from {who}, thanks!",
            "Sorted within the hour. Impressed.",
            "Fast and efficient.",
            "Didn't have to wait at all.",
        ),
        "resolution": (
            "Problem solved first time. Great job.",
            "{who} fixed it straight away.",
            "Everything works again, thank you!",
            "Finally someone who actually solves things.",
        ),
        "knowledge": (
            "Really knew their stuff.",
            "The agent explained everything clearly.",
            "Very competent, answered all my questions.",
            "Expert advice from {who}.",
        ),
        "courtesy": (
            "Lovely, friendly person on the phone.",
            "So patient and kind. Thank you!",
            "Very polite and helpful.",
            "{who} were great, really friendly.",
        ),
        "ease": (
            "Easy & painless.",
            "Took two minutes online. Perfect.",
            "Simple process, no hassle.",
            "Couldn't be easier.",
        ),
        "value": (
            "Great value for money.",
            "Good price and a nice discount.",
            "Worth every penny.",
            "Best deal I found.",
        ),
    },
}

# rare comments with characters that must be escaped in HTML output
HTML_SPECIAL_COMMENTS = (
    '<script>alert("x")</script>',
    "The <b>new</b> look is great & so fast!",
    "Calls rose from <10 to >15 a week?! Not OK.",
    'Agent said "we\'ll call you back" & never did.',
    "5/5 <3 thanks",
    "<i>Finally</i> fixed & working. Cheers, Tom & Jerry",
)

TONES = ("negative", "neutral", "positive")


def comment_catalogue(department_slugs: tuple[str, ...], attributes: tuple[str, ...],
                      n_variants: int = 4) -> list[str]:
    """All rendered comments, indexable as ``((tone * n_attr + attr) * n_dept + dept) * n_variants + k``.

    Tones/attributes with fewer than ``n_variants`` variants repeat their list cyclically.
    """
    out: list[str] = []
    for tone in TONES:
        for attr in attributes:
            variants = COMMENTS[tone][attr]
            for slug in department_slugs:
                who = DEPARTMENT_NOUNS.get(slug, "the team")
                for k in range(n_variants):
                    text = variants[k % len(variants)].replace("{who}", who)
                    out.append(text[0].upper() + text[1:])
    return out

# Sentences about problems no rating question asks about (issue 13): appended to the comment a customer
# affected by the problem already wrote. Worded so that each matches exactly one codebook theme of
# params/themes.yaml (mobile_app, price_increase) and no theme of the rated attributes.
UNASKED_COMMENTS: dict[str, tuple[str, ...]] = {
    "mobile_app": (
        "The app keeps crashing since the last update.",
        "The mobile app crashes every time I log in.",
        "Since the new app version I cannot log in on my phone.",
        "App crashed twice while I was paying.",
        "The iPhone app only shows a blank screen now.",
        "Android app freezes on the start screen after the update.",
    ),
    "price_increase": (
        "My subscription went up again this year.",
        "The monthly fee increased by 20% without any warning.",
        "Another fee increase, from 39 to 47 per month.",
        "Our subscription fee went up and nobody told us why.",
        "The new tariff is a big increase for a small business like ours.",
        "The fee hike this year hurts our margins.",
    ),
}

# Catalogue comments that mention an unasked theme's subject without the problem (no effect on the scores): a
# codebook theme would find them too, diluting the effect per mention it measures (ground_truth.json records them
# under per_mention). None today: the HTML-special comments once praised the app and quoted a price rise, and
# were reworded (same special characters) because they are written whatever the customer's tone, unlike every
# other comment, so they also biased the adjusted effect of the theme they matched.
UNASKED_BACKGROUND: dict[str, tuple[str, ...]] = {"mobile_app": (), "price_increase": ()}
