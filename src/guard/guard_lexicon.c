/*
 * guard/guard_lexicon.c: small word lists the tagger uses as features: honorifics, job words,
 * street words, organisation suffixes, calendar words, countries and cities, nationalities
 * and religions, common first names and common English words. A word's lexicon classes are a
 * bit set; the tagger learns what each class means in each context.
 *
 * Invariants: words are lower case (ASCII case-folded; non-ASCII letters folded by the
 *  tagger's own folding); multi-word names are listed word by word.
 * Thread-safety: a lexicon index is immutable after slm_guard_lexicon_create.
 * Non-goals: completeness: the lists are cues, not gazetteers; unseen names are found by
 *  shape and context.
 */
#include "guard/guard_lexicon.h"

#include <string.h>

#include "core/core.h"

/* ---- word lists ------------------------------------------------------------------------- */

static const char *const lex_title[] = {
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "dame", "madam", "mme",
    "mlle", "herr", "frau", "sr", "sra", "srta", "rev", "lord", "lady", "hon", "capt", "sgt",
    "fr", "jr", "phd", "md", NULL};

static const char *const lex_job[] = {
    "clerk", "driver", "attendant", "manager", "engineer", "nurse", "teacher", "officer",
    "assistant", "director", "technician", "operator", "worker", "analyst", "developer",
    "designer", "consultant", "accountant", "agent", "specialist", "supervisor", "coordinator",
    "administrator", "representative", "soldier", "doctor", "lawyer", "scientist", "cook", "chef",
    "cashier", "secretary", "librarian", "inspector", "mechanic", "electrician", "plumber",
    "carpenter", "pilot", "surgeon", "therapist", "pharmacist", "programmer", "architect",
    "editor", "writer", "journalist", "photographer", "sales", "salesperson", "receptionist",
    "instructor", "professor", "counselor", "counsellor", "guard", "firefighter", "police",
    "farmer", "baker", "butcher", "tailor", "painter", "musician", "singer", "actor", "dancer",
    "ceo", "cto", "cfo", "vp", "president", "chairman", "founder", "intern", "apprentice",
    "janitor", "cleaner", "helper", "aide", "dispatcher", "installer", "repairer", "machinist",
    "economist", "auditor", "broker", "banker", "teller", "tutor", NULL};

static const char *const lex_street[] = {
    "street", "st", "avenue", "ave", "av", "road", "rd", "lane", "ln", "drive", "boulevard",
    "blvd", "court", "ct", "place", "pl", "way", "square", "sq", "terrace", "apt", "apartment",
    "suite", "ste", "unit", "floor", "fl", "box", "po", "pobox", "strasse", "straße", "str",
    "gasse", "weg", "platz", "allee", "vej", "veien", "vei", "gade", "gata", "gatan", "vägen",
    "rue", "via", "viale", "piazza", "calle", "avenida", "rua", "praça", "plaza", "highway",
    "hwy", "parkway", "pkwy", "crescent", "cres", "close", "hill", "hills", "park", "row",
    "alley", "circle", "cir", "trail", "grove", "gardens", "mews", "wharf", "quay", "straat",
    "laan", "plein", "ulica", "ul", "utca", "tér", "út", "katu", "tie", "polku", "psc", "apo",
    "fpo", "dpo", "cmr", "chemin", "impasse", "route", "carrer", "travessa", "largo", NULL};

static const char *const lex_org[] = {
    "inc", "ltd", "llc", "plc", "gmbh", "corp", "corporation", "company", "co", "group",
    "agency", "bank", "university", "institute", "foundation", "associates", "partners",
    "research", "solutions", "systems", "technologies", "technology", "software", "services",
    "consulting", "labs", "ag", "sa", "bv", "nv", "oy", "ab", "as", "spa", "srl", "kg", "sons",
    "holdings", "industries", "international", "enterprises", "ventures", "capital", "media",
    "networks", "communications", "analytics", "insurance", "airlines", "motors", "pharma",
    "ratings", "traffic", "studio", "studios", "bros", "brothers", "club", "council", "ministry",
    "department", "school", "college", "hospital", "clinic", NULL};

static const char *const lex_calendar[] = {
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january",
    "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "today", "tomorrow", "yesterday", "morning", "evening", "night",
    "noon", "midnight", "week", "month", "year", "weekend", NULL};

static const char *const lex_place[] = {
    "afghanistan", "albania", "algeria", "andorra", "angola", "argentina", "armenia",
    "australia", "austria", "azerbaijan", "bahamas", "bahrain", "bangladesh", "barbados",
    "belarus", "belgium", "belize", "benin", "bhutan", "bolivia", "bosnia", "botswana", "brazil",
    "brunei", "bulgaria", "burundi", "cambodia", "cameroon", "canada", "chad", "chile", "china",
    "colombia", "congo", "croatia", "cuba", "cyprus", "czechia", "czech", "denmark", "djibouti",
    "dominica", "ecuador", "egypt", "eritrea", "estonia", "eswatini", "ethiopia", "fiji",
    "finland", "france", "gabon", "gambia", "georgia", "germany", "ghana", "greece", "greenland",
    "grenada", "guatemala", "guinea", "guyana", "haiti", "honduras", "hungary", "iceland", "india",
    "indonesia", "iran", "iraq", "ireland", "israel", "italy", "jamaica", "japan", "jordan",
    "kazakhstan", "kenya", "korea", "kosovo", "kuwait", "laos", "latvia", "lebanon", "lesotho",
    "liberia", "libya", "liechtenstein", "lithuania", "luxembourg", "madagascar", "malawi",
    "malaysia", "maldives", "mali", "malta", "mauritania", "mauritius", "mexico", "moldova",
    "monaco", "mongolia", "montenegro", "morocco", "mozambique", "myanmar", "namibia", "nepal",
    "netherlands", "holland", "nicaragua", "niger", "nigeria", "norway", "oman", "pakistan",
    "panama", "paraguay", "peru", "philippines", "poland", "portugal", "qatar", "romania",
    "russia", "rwanda", "samoa", "senegal", "serbia", "seychelles", "singapore", "slovakia",
    "slovenia", "somalia", "spain", "sudan", "suriname", "sweden", "switzerland", "syria",
    "taiwan", "tajikistan", "tanzania", "thailand", "togo", "tonga", "tunisia", "turkey",
    "uganda", "ukraine", "uruguay", "uzbekistan", "venezuela", "vietnam", "yemen", "zambia",
    "zimbabwe", "england", "scotland", "wales", "britain", "usa", "uk", "america", "europe",
    "asia", "africa", "united", "kingdom", "states", "south", "north", "east", "west", "new",
    "saint", "san", "santa", "los", "las", "port", "fort", "mount", "lake", "city", "town",
    "village", "county", "province", "state", "region", "island", "islands",
    "london", "paris", "berlin", "madrid", "rome", "vienna", "prague", "warsaw", "budapest",
    "amsterdam", "brussels", "lisbon", "dublin", "oslo", "stockholm", "helsinki", "copenhagen",
    "reykjavik", "athens", "moscow", "kyiv", "kiev", "istanbul", "ankara", "cairo", "lagos",
    "nairobi", "johannesburg", "cape", "tokyo", "osaka", "beijing", "shanghai", "seoul", "delhi",
    "mumbai", "bangalore", "sydney", "melbourne", "auckland", "toronto", "montreal",
    "vancouver", "york", "chicago", "boston", "houston", "dallas", "seattle", "denver", "miami",
    "atlanta", "angeles", "francisco", "diego", "phoenix", "philadelphia", "washington",
    "detroit", "austin", "hamburg", "munich", "frankfurt", "cologne", "zurich", "geneva",
    "milan", "naples", "turin", "barcelona", "valencia", "seville", "porto", "lyon",
    "marseille", "manchester", "liverpool", "birmingham", "glasgow", "edinburgh", "bristol",
    "leeds", "rotterdam", "antwerp", "krakow", "gdansk", "wroclaw", "riga", "tallinn",
    "vilnius", "bucharest", "sofia", "belgrade", "zagreb", "ljubljana", "bratislava",
    "gothenburg", "malmo", "bergen", "aarhus", "odense", "tampere", "turku", "recife",
    "são", "rio", "janeiro", "paulo", "bogota", "lima", "santiago", "buenos", "aires",
    "nicosia", "limassol", "valletta", "luxembourg", NULL};

static const char *const lex_nrp[] = {
    "american", "british", "english", "scottish", "welsh", "irish", "french", "german",
    "spanish", "italian", "portuguese", "dutch", "belgian", "swiss", "austrian", "swedish",
    "norwegian", "danish", "finnish", "icelandic", "polish", "czech", "slovak", "hungarian",
    "romanian", "bulgarian", "greek", "turkish", "russian", "ukrainian", "belarusian",
    "estonian", "latvian", "lithuanian", "croatian", "serbian", "slovenian", "bosnian",
    "albanian", "macedonian", "montenegrin", "chechen", "georgian", "armenian", "azerbaijani",
    "cypriot", "maltese", "luxembourgish", "greenlander", "greenlandic", "faroese",
    "canadian", "mexican", "brazilian", "argentine", "argentinian", "chilean", "colombian",
    "peruvian", "venezuelan", "cuban", "jamaican", "haitian", "chinese", "japanese", "korean",
    "vietnamese", "thai", "filipino", "indonesian", "malaysian", "singaporean", "indian",
    "pakistani", "bangladeshi", "nepalese", "afghan", "iranian", "persian", "iraqi", "syrian",
    "lebanese", "israeli", "palestinian", "jordanian", "saudi", "emirati", "egyptian",
    "moroccan", "algerian", "tunisian", "libyan", "nigerian", "ghanaian", "kenyan",
    "ethiopian", "somali", "south", "african", "australian", "zealander", "kiwi", "bruneian",
    "cambodian", "laotian", "mongolian", "kazakh", "uzbek", "tajik", "european", "asian",
    "latino", "latina", "hispanic", "arab", "arabic", "jewish", "muslim", "christian",
    "catholic", "protestant", "orthodox", "hindu", "buddhist", "sikh", "atheist", "agnostic",
    "mormon", "evangelical", "lutheran", "baptist", "methodist", "democrat", "democratic",
    "republican", "conservative", "liberal", "socialist", "communist", "libertarian",
    "green", "labour", "tory", NULL};

static const char *const lex_first[] = {
    "james", "john", "robert", "michael", "william", "david", "richard", "joseph", "thomas",
    "charles", "christopher", "daniel", "matthew", "anthony", "mark", "donald", "steven",
    "paul", "andrew", "joshua", "kevin", "brian", "george", "edward", "ronald", "timothy",
    "jason", "jeffrey", "ryan", "jacob", "gary", "nicholas", "eric", "jonathan", "stephen",
    "larry", "justin", "scott", "brandon", "benjamin", "samuel", "frank", "gregory", "alexander",
    "patrick", "peter", "henry", "jack", "adam", "walter", "harold", "carl", "arthur", "roger",
    "mary", "patricia", "jennifer", "linda", "elizabeth", "barbara", "susan", "jessica", "sarah",
    "karen", "nancy", "lisa", "betty", "margaret", "sandra", "ashley", "kimberly", "emily",
    "donna", "michelle", "dorothy", "carol", "amanda", "melissa", "deborah", "stephanie",
    "rebecca", "sharon", "laura", "cynthia", "kathleen", "amy", "angela", "anna", "emma",
    "olivia", "sophia", "julia", "maria", "marie", "anne", "claire", "sophie", "lucas", "louis",
    "hugo", "jean", "pierre", "jacques", "françois", "hans", "klaus", "jürgen", "stefan",
    "andreas", "markus", "thomas", "lars", "nils", "erik", "anders", "johan", "karl", "olaf",
    "sven", "ingrid", "astrid", "sigrid", "mikko", "juha", "jussi", "matti", "aino", "giuseppe",
    "giovanni", "marco", "luca", "francesco", "alessandro", "andrea", "giulia", "chiara",
    "francesca", "josé", "jose", "juan", "carlos", "luis", "miguel", "javier", "antonio",
    "manuel", "pedro", "ana", "carmen", "lucia", "isabel", "joão", "joao", "paulo", "rafael",
    "tiago", "mariana", "beatriz", "piotr", "krzysztof", "tomasz", "pawel", "anna", "katarzyna",
    "agnieszka", "jan", "petr", "jiri", "martin", "lukas", "tereza", "laszlo", "istvan",
    "zoltan", "eva", "ivan", "dmitri", "sergei", "alexei", "olga", "natalia", "tatiana",
    "elena", "irina", "svetlana", "mohammed", "muhammad", "ahmed", "ali", "omar", "fatima",
    "aisha", "yusuf", "hiroshi", "yuki", "kenji", "wei", "li", "chen", "raj", "priya", "amit",
    "sanjay", "nicole", "jamie", "rachel", "diana", "debra", "barbara", "victor", "oscar",
    "felix", "max", "leon", "noah", "liam", "ethan", "mason", "mia", "ella", "chloe", "grace",
    NULL};

static const char *const lex_brand[] = {
    "google", "alphabet", "microsoft", "apple", "amazon", "meta", "facebook", "instagram",
    "whatsapp", "twitter", "linkedin", "netflix", "spotify", "uber", "lyft", "airbnb", "tesla",
    "ibm", "oracle", "sap", "salesforce", "adobe", "intel", "amd", "nvidia", "cisco", "dell",
    "hp", "lenovo", "samsung", "sony", "lg", "huawei", "xiaomi", "nokia", "ericsson", "siemens",
    "bosch", "philips", "allianz", "axa", "aviva", "zurich", "generali", "prudential", "metlife",
    "visa", "mastercard", "paypal", "stripe", "square", "revolut", "monzo", "klarna", "adyen",
    "barclays", "hsbc", "lloyds", "natwest", "santander", "bbva", "ing", "rabobank", "abn",
    "deutsche", "commerzbank", "unicredit", "intesa", "bnp", "paribas", "societe", "credit",
    "suisse", "ubs", "citi", "citibank", "citigroup", "jpmorgan", "chase", "goldman", "sachs",
    "morgan", "stanley", "wells", "fargo", "nordea", "danske", "seb", "swedbank", "handelsbanken",
    "walmart", "target", "costco", "ikea", "aldi", "lidl", "tesco", "carrefour", "zara", "h&m",
    "nike", "adidas", "puma", "unilever", "nestle", "nestlé", "danone", "pepsico", "coca-cola",
    "mcdonald's", "starbucks", "ebay", "etsy", "shopify", "zalando", "booking", "expedia",
    "ryanair", "easyjet", "lufthansa", "klm", "emirates", "delta", "fedex", "ups", "dhl",
    "vodafone", "orange", "telefonica", "verizon", "comcast", "t-mobile", "telekom", "bt",
    "foursquare", "yelp", "reddit", "pinterest", "snapchat", "tiktok", "zoom", "slack",
    "dropbox", "atlassian", "github", "gitlab", "mozilla", "wikipedia", "reuters", "bloomberg",
    "experian", "equifax", "transunion", "moody's", "deloitte", "kpmg", "pwc", "accenture",
    "mckinsey", "gartner", "forrester", "nielsen", "toyota", "volkswagen", "bmw", "mercedes",
    "volvo", "ford", "honda", "renault", "peugeot", "fiat", "boeing", "airbus", NULL};

static const char *const lex_common[] = {
    "the", "a", "an", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for",
    "with", "from", "about", "as", "into", "like", "through", "after", "over", "between",
    "out", "against", "during", "without", "before", "under", "around", "among", "i", "you",
    "he", "she", "it", "we", "they", "me", "him", "her", "us", "them", "my", "your", "his",
    "its", "our", "their", "this", "that", "these", "those", "who", "whom", "whose", "which",
    "what", "where", "when", "why", "how", "is", "are", "was", "were", "be", "been", "being",
    "have", "has", "had", "do", "does", "did", "will", "would", "shall", "should", "can",
    "could", "may", "might", "must", "not", "no", "yes", "all", "any", "some", "each", "every",
    "other", "another", "such", "only", "own", "same", "so", "than", "too", "very", "just",
    "also", "now", "then", "here", "there", "please", "thanks", "thank", "hello", "hi", "dear",
    "regards", "best", "sincerely", "sorry", "ok", "okay", "new", "old", "good", "great",
    "first", "last", "long", "little", "right", "big", "high", "different", "small", "large",
    "next", "early", "young", "important", "few", "public", "bad", "able", "get", "got", "make",
    "go", "know", "take", "see", "come", "think", "look", "want", "give", "use", "find", "tell",
    "ask", "work", "seem", "feel", "try", "leave", "call", "need", "send", "sent", "help",
    "order", "account", "card", "payment", "number", "address", "phone", "email", "e-mail",
    "website", "name", "date", "time", "day", "today", "issue", "problem", "question",
    "ticket", "support", "customer", "service", "company", "team", "refund", "delivery",
    "package", "invoice", "bill", "billing", "amount", "bank", "transfer", "password", "login",
    "personal", "info", "information", "contact", "office", "home", "mobile", "fax", "street",
    "city", "country", "world", "life", "hand", "part", "child", "eye", "woman", "man", "place",
    "week", "case", "point", "government", "group", "fact", "still", "even", "well", "back",
    "way", "why", "because", "while", "where", "again", "never", "always", "sometimes",
    "who's", "what's", "it's", "i'm", "don't", "can't", "won't", "we'll", "they're", "there's",
    "is", "remember", "saved", "killed", "met", "meet", "flew", "lives", "live", "born", "from",
    NULL};

/* Lexicon classes, in the order of lex_lists; each sets bit (1 << index). */
static const char *const *const lex_lists[GUARD_LEX_COUNT] = {
    [GUARD_LEX_TITLE] = lex_title,   [GUARD_LEX_JOB] = lex_job,
    [GUARD_LEX_STREET] = lex_street, [GUARD_LEX_ORG] = lex_org,
    [GUARD_LEX_CALENDAR] = lex_calendar, [GUARD_LEX_PLACE] = lex_place,
    [GUARD_LEX_NRP] = lex_nrp,       [GUARD_LEX_FIRST] = lex_first,
    [GUARD_LEX_COMMON] = lex_common, [GUARD_LEX_BRAND] = lex_brand,
};

/* ---- index ------------------------------------------------------------------------------ */

typedef struct {
    const char *word;  /* borrowed from the static lists; NULL = empty slot */
    uint32_t classes;  /* bit set of guard_lex_class */
} lex_slot;

struct guard_lexicon {
    lex_slot *slots;   /* owned, `size` slots, open addressing */
    size_t size;       /* power of two, at least twice the number of words */
};

static uint32_t lex_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

slm_status slm_guard_lexicon_create(guard_lexicon **out, char *err) {
    size_t words = 0;
    for (int c = 0; c < GUARD_LEX_COUNT; c++)
        for (const char *const *w = lex_lists[c]; *w; w++) words++;
    size_t size = 64;
    while (size < 2 * words) size *= 2;
    guard_lexicon *lx = slm_calloc(1, sizeof *lx);
    if (!lx || !(lx->slots = slm_calloc(size, sizeof *lx->slots))) {
        slm_free(lx);
        return slm_errf(err, SLM_ERR_NOMEM, "lexicon");
    }
    lx->size = size;
    for (int c = 0; c < GUARD_LEX_COUNT; c++) {
        for (const char *const *w = lex_lists[c]; *w; w++) {
            size_t n = strlen(*w), i = lex_hash(*w, n) & (size - 1);
            while (lx->slots[i].word && strcmp(lx->slots[i].word, *w)) i = (i + 1) & (size - 1);
            lx->slots[i].word = *w;
            lx->slots[i].classes |= 1u << c;
        }
    }
    *out = lx;
    return SLM_OK;
}

void slm_guard_lexicon_destroy(guard_lexicon *lx) {
    if (!lx) return;
    slm_free(lx->slots);
    slm_free(lx);
}

uint32_t slm_guard_lexicon_get(const guard_lexicon *lx, const char *word, size_t n) {
    for (size_t i = lex_hash(word, n) & (lx->size - 1); lx->slots[i].word; i = (i + 1) & (lx->size - 1)) {
        const char *w = lx->slots[i].word;
        if (!strncmp(w, word, n) && w[n] == '\0') return lx->slots[i].classes;
    }
    return 0;
}
