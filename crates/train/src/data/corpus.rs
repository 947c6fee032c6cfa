//! A built-in corpus of short, simple children's stories, in the spirit of TinyStories.
//!
//! The project never downloads training data: this module *generates* it. Each story is put
//! together from a cast (a named girl or boy, a friend, a grown-up, an animal, a toy, a place)
//! and one of several story arcs (finding something, losing and finding a toy, a friend who
//! helps, rescuing an animal, a trip, learning to share, learning to listen, being brave,
//! making a new friend). Every arc is a list of slots, and each slot is a small set of
//! alternative sentence templates, so stories share a clear structure but vary in wording.
//!
//! The text is:
//! - **deterministic** — a story depends only on the seed and its index, through
//!   [`crate::rng::Rng`] (integer arithmetic only), so it is the same on every platform;
//! - **ASCII-only** — printable bytes `0x20..=0x7E` and `'\n'`, with no trailing spaces;
//! - **simple** — short sentences that start with a capital letter and end with `.`, `!` or
//!   `?`, with pronouns that follow the character (she/her, he/his; animals are "it").
//!
//! [`builtin`] gives the default corpus (about a megabyte), which a byte-level model of a few
//! hundred thousand parameters learns to imitate within minutes.

use crate::rng::Rng;

/// Default seed of the built-in corpus.
pub const DEFAULT_SEED: u64 = 2026;

/// Default number of stories in the built-in corpus.
pub const DEFAULT_STORIES: usize = 2000;

/// One story, generated from `seed` and its index `n` (same inputs → same text, on every
/// platform).
///
/// The story has no trailing newline; [`generate`] adds the blank line between stories.
pub fn story(seed: u64, n: usize) -> String {
    let mut out = String::with_capacity(1024);
    write_story(seed, n, &mut out);
    out
}

/// `stories` stories, each followed by a blank line ("\n\n"), concatenated.
///
/// Story `n` of the result is exactly [`story`]`(seed, n)`.
pub fn generate(seed: u64, stories: usize) -> String {
    let mut out = String::with_capacity(stories.saturating_mul(700));
    for n in 0..stories {
        write_story(seed, n, &mut out);
        out.push_str("\n\n");
    }
    out
}

/// `generate(DEFAULT_SEED, DEFAULT_STORIES)`.
pub fn builtin() -> String {
    generate(DEFAULT_SEED, DEFAULT_STORIES)
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// Alternative sentence templates for one place in a story; `""` means "say nothing here".
type Slot = &'static [&'static str];

/// A table of rows; one row is picked and its cells bound to `keys`, in order.
#[derive(Clone, Copy)]
struct Table {
    keys: &'static [&'static str],
    rows: &'static [&'static [&'static str]],
}

/// One kind of story: the extra variables it needs, then its sentences, slot by slot.
#[derive(Clone, Copy)]
struct StoryArc {
    table: Option<Table>,
    slots: &'static [Slot],
}

/// The variables of one story: a small open-addressing hash table, since a story looks up a
/// variable for every placeholder. Keys are bound in lower case; look-ups ignore case.
struct Vars {
    slots: [(&'static str, &'static str); VAR_SLOTS],
}

/// Room for every variable a story binds (about 40), with space to spare: the table must
/// never fill up, or a look-up of an unbound key would not end.
const VAR_SLOTS: usize = 128;

impl Vars {
    fn new() -> Self {
        Vars {
            slots: [("", ""); VAR_SLOTS],
        }
    }

    /// The slot of `key`, or the empty slot where it would go.
    fn slot(&self, key: &str) -> usize {
        let mut hash = key.len();
        for &b in key.as_bytes() {
            hash = hash.wrapping_mul(31).wrapping_add(usize::from(b | 0x20));
        }
        let mut i = hash % VAR_SLOTS;
        while !self.slots[i].0.is_empty() && !self.slots[i].0.eq_ignore_ascii_case(key) {
            i = (i + 1) % VAR_SLOTS;
        }
        i
    }

    /// Binds (or rebinds) `key`.
    fn set(&mut self, key: &'static str, value: &'static str) {
        let i = self.slot(key);
        self.slots[i] = (key, value);
    }

    fn get(&self, key: &str) -> Option<&'static str> {
        let (k, value) = self.slots[self.slot(key)];
        (!k.is_empty()).then_some(value)
    }
}

/// Writes one story: binds variables, then fills templates into `out`.
///
/// Templates name variables in braces: `{name}`. A capital first letter (`{He}`) capitalizes
/// the value; an `a_` prefix (`{a_thing}`) puts "a" or "an" in front of it. Values may
/// themselves contain placeholders.
struct Teller<'o> {
    rng: Rng,
    vars: Vars,
    out: &'o mut String,
    line_start: bool,
}

impl<'o> Teller<'o> {
    fn new(rng: Rng, out: &'o mut String) -> Self {
        Teller {
            rng,
            vars: Vars::new(),
            out,
            line_start: true,
        }
    }

    fn set(&mut self, key: &'static str, value: &'static str) {
        self.vars.set(key, value);
    }

    fn set_one(&mut self, key: &'static str, list: &'static [&'static str]) {
        let value = self.rng.pick(list);
        self.set(key, value);
    }

    fn set_row(&mut self, table: Table) {
        let row = self.rng.pick(table.rows);
        debug_assert_eq!(row.len(), table.keys.len());
        for (key, value) in table.keys.iter().zip(row) {
            self.set(key, value);
        }
    }

    /// Binds each of `keys` to a different entry of `list` (which is longer than `keys`).
    fn set_distinct(&mut self, keys: &[&'static str], list: &'static [&'static str]) {
        let mut used: Vec<usize> = Vec::with_capacity(keys.len());
        for key in keys {
            let mut i = self.rng.below(list.len());
            while used.contains(&i) {
                i = (i + 1) % list.len();
            }
            used.push(i);
            self.set(key, list[i]);
        }
    }

    /// The value of `key`, which may be capitalized.
    fn lookup(&self, key: &str) -> &'static str {
        match self.vars.get(key) {
            Some(value) => value,
            None => panic!("corpus template uses an unbound variable {{{key}}}"),
        }
    }

    fn fill(&mut self, template: &str) {
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            self.out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .expect("corpus template has an unclosed '{'");
            self.fill_var(&after[..close]);
            rest = &after[close + 1..];
        }
        self.out.push_str(rest);
    }

    fn fill_var(&mut self, key: &str) {
        let start = self.out.len();
        let (article, name) = match key.get(..2) {
            Some(prefix) if prefix.eq_ignore_ascii_case("a_") => (true, &key[2..]),
            _ => (false, key),
        };
        self.fill(self.lookup(name));
        if article {
            let vowel = self.out[start..].starts_with(['a', 'e', 'i', 'o', 'u']);
            self.out.insert_str(start, if vowel { "an " } else { "a " });
        }
        if key.starts_with(|c: char| c.is_ascii_uppercase()) && self.out.len() > start {
            self.out[start..start + 1].make_ascii_uppercase();
        }
    }

    /// Says one of `alternatives` (or nothing, for `""`).
    fn say(&mut self, alternatives: &[&'static str]) {
        let template = self.rng.pick(alternatives);
        if template.is_empty() {
            return;
        }
        if !self.line_start {
            self.out.push(' ');
        }
        self.fill(template);
        self.line_start = false;
    }

    fn tell(&mut self, slots: &[Slot]) {
        for &slot in slots {
            self.say(slot);
        }
    }

    fn new_paragraph(&mut self) {
        if !self.line_start {
            self.out.push('\n');
            self.line_start = true;
        }
    }
}

fn write_story(seed: u64, n: usize, out: &mut String) {
    let mut rng = Rng::for_stream(seed, n as u64);
    let arc = rng.pick(ARCS);
    write_arc(rng, arc, out);
}

/// Casts a story, then tells `arc` with an opening and, sometimes, a closing line.
fn write_arc(rng: Rng, arc: StoryArc, out: &mut String) {
    let mut t = Teller::new(rng, out);
    cast(&mut t);
    if let Some(table) = arc.table {
        t.set_row(table);
    }
    t.tell(INTRO);
    if t.rng.below(2) == 0 {
        t.new_paragraph();
    }
    t.tell(arc.slots);
    let ending = t.rng.pick(ENDINGS);
    if !ending.is_empty() {
        t.new_paragraph();
        t.say(&[ending]);
    }
}

/// Binds the characters, things and places every arc may use.
fn cast(t: &mut Teller) {
    let hero_is_girl = t.rng.below(2) == 0;
    let friend_is_girl = t.rng.below(2) == 0;
    bind_child(t, HERO_KEYS, hero_is_girl);
    bind_child(t, FRIEND_KEYS, friend_is_girl);
    let hero = t.lookup("name");
    let names = if friend_is_girl { GIRLS } else { BOYS };
    let mut friend = t.rng.pick(names);
    while friend == hero {
        friend = t.rng.pick(names);
    }
    t.set("friend", friend);
    t.set_row(PARENT);
    t.set_row(ANIMAL);
    t.set_row(PLACE);
    for (key, list) in WORDS {
        t.set_one(key, list);
    }
    t.set_distinct(&["spot", "spot2", "spot3"], SPOTS);
    t.set("thing", "{adj} {obj}");
    t.set("pet", "{aadj} {animal}");
}

fn bind_child(t: &mut Teller, keys: &'static [&'static str], girl: bool) {
    let values = if girl { SHE } else { HE };
    for (key, value) in keys.iter().zip(values) {
        t.set(key, value);
    }
    if keys[0] == "he" {
        t.set_one("name", if girl { GIRLS } else { BOYS });
    }
}

// ---------------------------------------------------------------------------------------------
// Word lists
// ---------------------------------------------------------------------------------------------

const GIRLS: &[&str] = &[
    "Lily", "Mia", "Sara", "Anna", "Emma", "Lucy", "Zoe", "Ella", "Ruby", "Amy", "Nina", "Rose",
    "Daisy", "Jane", "Kate", "Molly",
];

const BOYS: &[&str] = &[
    "Tom", "Ben", "Max", "Sam", "Jack", "Leo", "Tim", "Finn", "Noah", "Jake", "Ollie", "Billy",
    "Joe", "Dan", "Luke", "Toby",
];

const HERO_KEYS: &[&str] = &["he", "his", "him", "self", "kind"];
const FRIEND_KEYS: &[&str] = &["fhe", "fhis", "fhim", "fself", "fkind"];
const SHE: &[&str] = &["she", "her", "her", "herself", "girl"];
const HE: &[&str] = &["he", "his", "him", "himself", "boy"];

const PARENT: Table = Table {
    keys: &["parent", "phe", "phis"],
    rows: &[
        &["Mom", "she", "her"],
        &["Dad", "he", "his"],
        &["Grandma", "she", "her"],
        &["Grandpa", "he", "his"],
    ],
};

const ANIMAL: Table = Table {
    keys: &["animal", "sound", "cry", "trick"],
    rows: &[
        &["dog", "Woof", "barked", "wagged its tail"],
        &["puppy", "Yip", "yipped", "licked {his} nose"],
        &["cat", "Meow", "meowed", "rubbed against {his} legs"],
        &["kitten", "Mew", "mewed", "purred softly"],
        &["duck", "Quack", "quacked", "flapped its wings"],
        &["frog", "Ribbit", "croaked", "jumped up and down"],
        &["bird", "Tweet", "sang", "flew around in a circle"],
        &["bunny", "Squeak", "squeaked", "hopped in a little circle"],
        &["mouse", "Squeak", "squeaked", "wiggled its whiskers"],
        &["owl", "Hoo", "hooted", "blinked its big eyes"],
        &["goat", "Meh", "bleated", "kicked up its feet"],
        &["hen", "Cluck", "clucked", "fluffed its feathers"],
        &["squirrel", "Chit", "chattered", "waved its bushy tail"],
    ],
};

const PLACE: Table = Table {
    keys: &["place", "fun", "sight"],
    rows: &[
        &[
            "park",
            "played on the swings and the slide",
            "a dog chasing a red ball",
        ],
        &[
            "beach",
            "built a big sand castle",
            "a crab walking sideways",
        ],
        &[
            "forest",
            "walked on a path under the tall trees",
            "a deer drinking from a stream",
        ],
        &[
            "farm",
            "fed the hens and the pigs",
            "a baby goat with a tiny bell",
        ],
        &[
            "lake",
            "threw little stones into the water",
            "a family of ducks swimming by",
        ],
        &[
            "zoo",
            "saw lions, bears and monkeys",
            "a giraffe eating leaves from a tree",
        ],
        &[
            "garden",
            "picked flowers and smelled the roses",
            "a butterfly with yellow wings",
        ],
        &[
            "hill",
            "rolled down the soft green grass",
            "the whole town far below",
        ],
        &[
            "library",
            "read books about ships and stars",
            "a big book full of dinosaurs",
        ],
        &[
            "market",
            "bought apples and fresh bread",
            "a man selling bright balloons",
        ],
        &[
            "river",
            "watched the boats go by",
            "a fish jump out of the water",
        ],
        &[
            "playground",
            "climbed to the top of the jungle gym",
            "two boys playing tag",
        ],
    ],
};

const WORDS: &[(&str, &[&str])] = &[
    (
        "obj",
        &[
            "ball",
            "kite",
            "hat",
            "doll",
            "teddy bear",
            "toy boat",
            "toy car",
            "book",
            "shell",
            "stone",
            "key",
            "ring",
            "cup",
            "box",
            "drum",
            "blanket",
            "scarf",
            "balloon",
            "bell",
            "feather",
            "button",
            "train",
            "robot",
            "crayon",
            "whistle",
            "umbrella",
            "bucket",
        ],
    ),
    (
        "adj",
        &[
            "red", "blue", "green", "yellow", "pink", "purple", "orange", "little", "big", "shiny",
            "new", "old", "tiny", "golden", "silver", "bright",
        ],
    ),
    (
        "aadj",
        &[
            "little", "small", "fluffy", "tiny", "friendly", "cute", "young", "baby",
        ],
    ),
    (
        "food",
        &[
            "apple",
            "cookie",
            "sandwich",
            "banana",
            "pear",
            "muffin",
            "plum",
            "cupcake",
            "carrot",
            "piece of cake",
            "piece of bread",
            "orange",
        ],
    ),
    (
        "time",
        &[
            "morning",
            "afternoon",
            "day",
            "sunny day",
            "bright morning",
            "warm afternoon",
        ],
    ),
    (
        "trait",
        &[
            "kind", "happy", "curious", "brave", "shy", "funny", "busy", "clever", "gentle",
            "cheerful", "sweet", "playful", "quiet", "helpful",
        ],
    ),
    (
        "feel",
        &["happy", "glad", "proud", "excited", "cheerful", "joyful"],
    ),
    ("years", &["three", "four", "five", "six", "seven"]),
    (
        "hobby",
        &[
            "play outside",
            "draw pictures of animals",
            "sing songs",
            "run in the grass",
            "read books",
            "look at the stars",
            "help {parent} in the kitchen",
            "jump in puddles",
            "dance to music",
            "build things with blocks",
            "climb trees",
            "watch the birds",
            "ride {his} bike",
            "paint with bright colors",
        ],
    ),
    (
        "weather",
        &[
            "The sun was warm and bright.",
            "It was a windy day.",
            "The sky was blue, and the birds were singing.",
            "It had rained, and there were puddles everywhere.",
            "The flowers were starting to bloom.",
            "Big white clouds floated across the sky.",
        ],
    ),
    (
        "play",
        &[
            "played tag in the yard",
            "drew pictures with chalk",
            "built a fort out of pillows",
            "looked for bugs under the rocks",
            "made mud pies",
            "played hide and seek",
            "raced their toy cars",
            "had a tea party with cups and plates",
        ],
    ),
];

const SPOTS: &[&str] = &[
    "under the bed",
    "behind the sofa",
    "in the toy box",
    "under the table",
    "in the garden",
    "next to the door",
    "inside {his} boots",
    "on a kitchen chair",
    "under a pile of clothes",
    "in the bath",
    "behind the curtains",
    "in the car",
];

// ---------------------------------------------------------------------------------------------
// Story parts
// ---------------------------------------------------------------------------------------------

const INTRO: &[Slot] = &[
    &[
        "Once upon a time, there was a little {kind} named {name}.",
        "Once upon a time, there was {a_trait} {kind} called {name}.",
        "There once was a little {kind} named {name} who had a big smile.",
        "{Name} was {a_trait} little {kind}.",
        "Once upon a time, in a small town, there lived a {kind} named {name}.",
    ],
    &[
        "{He} loved to {hobby}.",
        "Every day, {he} liked to {hobby}.",
        "{He} was {years} years old.",
        "",
    ],
    &[
        "{He} lived with {parent} in a house near the {place}.",
        "",
        "",
    ],
    &["{weather}", "", ""],
];

const ENDINGS: &[&str] = &[
    "The end.",
    "The end.",
    "And they all lived happily ever after.",
    "{Name} always remembered that day.",
    "",
    "",
    "",
];

const ARCS: &[StoryArc] = &[
    FIND, LOST, HELP, RESCUE, TRIP, SHARE, LISTEN, BRAVE, NEW_FRIEND,
];

const FIND: StoryArc = StoryArc {
    table: None,
    slots: &[
        &[
            "One day, {name} went to the {place}.",
            "One {time}, {name} went to the {place} with {parent}.",
            "One {time}, {name} went to play at the {place}.",
        ],
        &[
            "{He} saw something {adj} on the ground.",
            "On the way, {he} saw something {adj}.",
            "Suddenly, {he} saw something small hiding in the grass.",
        ],
        &[
            "It was {a_thing}!",
            "{He} bent down to look. It was {a_thing}!",
            "{He} picked it up. It was {a_thing}.",
        ],
        &[
            "\"Wow!\" said {name}. \"Look what I found!\"",
            "{Name} was so {feel}. \"What a nice {obj},\" {he} said.",
            "",
        ],
        &[
            "The {obj} was a little dirty, so {he} wiped it clean.",
            "{He} turned it over in {his} hands. It was the best {obj} {he} had ever seen.",
            "",
        ],
        &[
            "{He} wondered who it belonged to. Then {friend} came running. \"That is my {obj}!\" \
             {fhe} said. \"I lost it this morning.\" {Name} gave the {obj} back to {fhim}. \
             \"Thank you! You are very kind,\" said {friend}.",
            "{Name} took the {obj} home and showed it to {parent}. \"Can I keep it?\" {he} asked. \
             \"Yes, you can,\" {parent} said with a smile. {Name} put it on the shelf next to \
             {his} bed.",
            "{He} played with the {obj} all afternoon. {He} showed it to {friend}, and they \
             played with it together. When it was time to go home, {name} held it tight.",
        ],
        &["{Name} felt very {feel}.", "It was a good day.", ""],
    ],
};

const LOST: StoryArc = StoryArc {
    table: None,
    slots: &[
        &[
            "{Name} had {a_thing}. {He} loved it very much.",
            "{Name} had a favorite toy. It was {a_thing}.",
            "{Name} took {his} {thing} everywhere {he} went.",
        ],
        &[
            "One {time}, {he} could not find it.",
            "But one day, the {obj} was gone!",
            "One {time}, {he} looked for the {obj}, but it was not there.",
        ],
        &[
            "{Name} felt sad, and a tear rolled down {his} face.",
            "\"Where is my {obj}?\" {he} asked.",
            "{Name} was very worried.",
        ],
        &[
            "{He} looked everywhere.",
            "\"Maybe it is hiding,\" {he} thought.",
            "",
        ],
        &[
            "{He} looked {spot}. It was not there.",
            "{He} looked {spot} and {spot2}, but {he} could not find it.",
        ],
        &[
            "Then {parent} came to help. \"Let's look together,\" {phe} said.",
            "Then {friend} came over. \"I will help you look,\" {fhe} said.",
            "{His} pet {animal} came to help. \"{Sound}!\" it said.",
        ],
        &[
            "At last, they found the {obj} {spot3}!",
            "They looked {spot3}, and there it was!",
        ],
        &[
            "{Name} was so {feel}. {He} hugged {his} {obj} tight.",
            "\"Thank you!\" said {name}. {He} promised to take good care of it.",
        ],
        &[
            "That night, {name} went to sleep with the {obj} next to {him}.",
            "",
        ],
    ],
};

const HELP: StoryArc = StoryArc {
    table: Some(Table {
        keys: &["goal", "trouble", "fix"],
        rows: &[
            &[
                "build a tall tower of blocks",
                "Every time {he} put the last block on top, the tower fell down.",
                "{Friend} held the bottom steady while {name} put the blocks on top.",
            ],
            &[
                "pick the red apples from the big tree",
                "The apples were too high, and {he} could not reach them.",
                "{Friend} held the ladder, and {name} climbed up slowly.",
            ],
            &[
                "fly {his} new kite",
                "The kite kept falling down to the ground.",
                "{Friend} held the kite up high, and {name} ran as fast as {he} could.",
            ],
            &[
                "carry a big box of toys to {his} room",
                "The box was too heavy for one child.",
                "{Friend} took one side, and {name} took the other.",
            ],
            &[
                "finish a big puzzle",
                "There were so many pieces, and {he} did not know where to start.",
                "{Friend} found all the edge pieces, and {name} did the middle.",
            ],
            &[
                "make a cake for {parent}",
                "{He} did not know how much flour to use.",
                "{Friend} read the recipe out loud, and {name} mixed everything in a bowl.",
            ],
            &[
                "plant flowers in the garden",
                "The ground was hard and dry.",
                "{Friend} brought water, and {name} dug little holes.",
            ],
            &[
                "ride {his} new bike",
                "{He} kept wobbling and falling over.",
                "{Friend} held the back of the seat and ran next to {him}.",
            ],
        ],
    }),
    slots: &[
        &[
            "One {time}, {name} wanted to {goal}.",
            "{Name} had a plan. {He} wanted to {goal}.",
        ],
        &["{Trouble}"],
        &[
            "{Name} felt sad and sat down.",
            "\"I can't do it,\" {he} said.",
            "{Name} tried again and again, but it did not work.",
        ],
        &[
            "Just then, {friend} came by. \"What is wrong?\" {fhe} asked.",
            "{His} friend {friend} saw {him} and came over.",
        ],
        &[
            "\"I can help you,\" said {friend}.",
            "\"Let's do it together,\" {fhe} said.",
            "",
        ],
        &["{Fix}"],
        &[
            "They worked together, step by step.",
            "They were careful and did not give up.",
            "",
        ],
        &[
            "It worked!",
            "This time, it worked!",
            "Soon, they were done.",
        ],
        &[
            "{Name} and {friend} laughed and clapped.",
            "\"Thank you, {friend}!\" said {name}. \"You are a good friend.\"",
            "{Name} learned that hard things are easier when friends help each other.",
        ],
    ],
};

const RESCUE: StoryArc = StoryArc {
    table: Some(Table {
        keys: &["trouble", "fix"],
        rows: &[
            &[
                "was stuck up in a tall tree",
                "{Name} ran to get {parent}. {Parent} got a ladder and brought the {animal} down.",
            ],
            &[
                "was stuck in a muddy hole",
                "{Name} put a long board into the hole, and the {animal} climbed out slowly.",
            ],
            &[
                "was caught in an old fence",
                "{Name} moved the wire very gently until the {animal} was free.",
            ],
            &[
                "was lost and could not find its home",
                "{Name} and the {animal} looked and looked until they found its family.",
            ],
            &[
                "was hungry and cold",
                "{Name} shared {his} {food} with it and wrapped it in a warm blanket.",
            ],
            &[
                "had hurt its leg",
                "{Name} carried it home, and {parent} put a small bandage on its leg.",
            ],
            &[
                "was stuck in a big box",
                "{Name} tipped the box over, and the {animal} came out.",
            ],
        ],
    }),
    slots: &[
        &[
            "One {time}, {name} was walking near the {place}.",
            "One day, {name} went outside to play.",
        ],
        &[
            "{He} heard a small sound. \"{Sound}! {Sound}!\"",
            "Suddenly, {he} heard a sad little sound.",
        ],
        &[
            "It was {a_pet}. The {animal} {trouble}.",
            "{He} looked around and saw {a_pet}. It {trouble}.",
        ],
        &[
            "\"Don't worry,\" said {name}. \"I will help you.\"",
            "{Name} wanted to help the poor {animal}.",
            "",
        ],
        &["{Fix}"],
        &[
            "Soon the {animal} was safe.",
            "At last, the poor {animal} was safe and sound.",
        ],
        &[
            "The {animal} {trick}.",
            "The {animal} {cry} happily. \"{Sound}!\"",
        ],
        &[
            "Helping others made {name} feel {feel}.",
            "From that day on, the {animal} and {name} were best friends.",
            "{Parent} said, \"I am proud of you, {name}.\"",
        ],
    ],
};

const TRIP: StoryArc = StoryArc {
    table: None,
    slots: &[
        &[
            "One {time}, {parent} said, \"Let's go to the {place} today!\"",
            "On a warm day, {name} and {parent} went on a trip to the {place}.",
        ],
        &[
            "{Name} was so excited that {he} jumped up and down.",
            "{Name} packed {a_food} in {his} bag.",
            "",
        ],
        &[
            "On the way, they sang songs in the car.",
            "The sky was clear, and the wind was soft.",
            "",
        ],
        &[
            "At the {place}, they {fun}.",
            "When they got there, they {fun}.",
        ],
        &[
            "Then {name} saw {sight}. \"Look!\" {he} said.",
            "{Name} saw {sight}. It was so much fun to watch.",
        ],
        &[
            "Later, they ate {a_food} under a tree.",
            "{Name} shared {his} {food} with {parent}.",
            "",
        ],
        &[
            "When the sun went down, they went home.",
            "Soon it was time to go home.",
        ],
        &[
            "{Name} was tired but {feel}. {He} fell asleep in the car.",
            "That night, {name} dreamed about the {place}.",
            "\"Can we come back tomorrow?\" asked {name}. {Parent} laughed and said, \
             \"Yes, we can.\"",
        ],
    ],
};

const SHARE: StoryArc = StoryArc {
    table: None,
    slots: &[
        &[
            "{Name} had {a_thing}. It was {his} favorite toy.",
            "{Name} got {a_thing} for {his} birthday.",
        ],
        &[
            "One {time}, {friend} came over to play. {Fhe} wanted to play with the {obj} too.",
            "One day, {friend} saw the {obj} and asked, \"Can I play with it too?\"",
        ],
        &[
            "\"No! It is mine!\" said {name}.",
            "{Name} did not want to share. {He} held the {obj} close.",
        ],
        &[
            "{Friend} felt sad and walked away.",
            "{Friend} looked down at {fhis} shoes. {Fhe} was very sad.",
        ],
        &[
            "{Parent} saw what happened. \"Sharing is kind,\" {phe} said.",
            "{Parent} sat down next to {name}. \"How would you feel if {friend} did not share with \
             you?\" {phe} asked.",
        ],
        &[
            "{Name} thought about it. Then {he} ran to {friend}.",
            "{Name} felt bad. {He} walked over to {friend}.",
        ],
        &[
            "\"I am sorry. You can play with my {obj} too,\" {he} said.",
            "\"Here, let's play with it together,\" said {name}.",
        ],
        &[
            "They took turns, and it was much more fun.",
            "{Friend} smiled, and they played together all day.",
        ],
        &["{Name} learned that sharing makes everyone happy.", ""],
    ],
};

const LISTEN: StoryArc = StoryArc {
    table: Some(Table {
        keys: &["rule", "oops"],
        rows: &[
            &[
                "not to climb on the garden wall",
                "climbed up anyway. Then {he} slipped and hurt {his} knee",
            ],
            &[
                "to hold the cup with two hands",
                "held it with one hand. The cup fell and broke on the floor",
            ],
            &[
                "to wear {his} coat because it was cold",
                "left the coat at home. Soon {he} was cold and shivering",
            ],
            &[
                "not to eat too many cookies",
                "ate ten cookies. Soon {his} tummy began to hurt",
            ],
            &[
                "not to run by the pond",
                "ran by the pond anyway. {He} slipped and fell into the cold water",
            ],
            &[
                "to put {his} toys away",
                "left {his} toys on the floor. Later, {he} tripped over a toy car and fell",
            ],
            &[
                "not to play ball in the house",
                "threw a ball in the living room. It hit a lamp, and the lamp fell down",
            ],
        ],
    }),
    slots: &[
        &[
            "One {time}, {parent} told {name} {rule}.",
            "\"{Name}, remember {rule},\" said {parent}.",
        ],
        &[
            "But {name} did not listen.",
            "{Name} nodded, but {he} was not really listening.",
        ],
        &["{He} {oops}."],
        &[
            "{Name} started to cry.",
            "{Name} felt sorry.",
            "\"Oh no!\" cried {name}.",
        ],
        &[
            "{Parent} came and gave {him} a big hug.",
            "{Parent} came to help {him}.",
        ],
        &["\"I am sorry,\" said {name}. \"Next time I will listen.\""],
        &[
            "{Parent} smiled. \"Everyone makes mistakes,\" {phe} said.",
            "",
        ],
        &[
            "From then on, {name} always listened to {parent}.",
            "{Name} learned that it is good to listen.",
        ],
    ],
};

const BRAVE: StoryArc = StoryArc {
    table: Some(Table {
        keys: &["fear", "moment", "discovery"],
        rows: &[
            &[
                "the dark",
                "One night, the light in {his} room went out.",
                "{He} looked around. {His} room looked just the same as in the day.",
            ],
            &[
                "the big dog next door",
                "One day, the dog ran up to {him} at the gate.",
                "The dog only wanted to lick {his} hand and play.",
            ],
            &[
                "deep water",
                "One day at the lake, {friend} asked {him} to swim.",
                "{He} put on {his} arm floats and stepped in. The water was cool and nice.",
            ],
            &[
                "loud thunder",
                "One night, a big storm came.",
                "The thunder was loud, but {he} was safe and warm in {his} bed.",
            ],
            &[
                "the tall slide",
                "One day at the park, {friend} said, \"Let's go down the slide together!\"",
                "The slide was fast and fun, and {he} laughed all the way down.",
            ],
            &[
                "bees",
                "One day, a bee flew near {him} in the garden.",
                "{He} stood very still. The bee looked at a flower and flew away.",
            ],
        ],
    }),
    slots: &[
        &[
            "{Name} was afraid of {fear}.",
            "There was one thing {name} did not like. {He} was scared of {fear}.",
        ],
        &[
            "When {he} thought about it, {his} tummy felt funny.",
            "{He} always tried to stay far away.",
            "",
        ],
        &["{Moment}"],
        &[
            "{Name} wanted to run and hide. But then {he} took a deep breath.",
            "{Name} was scared, but {he} remembered what {parent} said: \"Be brave, little one.\"",
        ],
        &[
            "\"I can be brave,\" {he} said to {self}.",
            "{He} counted to three and tried.",
        ],
        &["{Discovery}"],
        &["{Name} smiled. It was not so scary after all.", ""],
        &[
            "After that, {name} was not afraid of {fear} anymore.",
            "{Name} felt very proud of {self}.",
        ],
    ],
};

const NEW_FRIEND: StoryArc = StoryArc {
    table: None,
    slots: &[
        &[
            "One {time}, a new {fkind} came to {name}'s street.",
            "One day at the {place}, {name} saw a {fkind} {he} did not know.",
        ],
        &[
            "{Fhis} name was {friend}.",
            "The {fkind} was called {friend}.",
        ],
        &[
            "{Friend} stood all alone and looked shy.",
            "{Friend} sat by {fself} and did not say a word.",
            "",
        ],
        &[
            "{Name} walked over and said, \"Hi! Do you want to play with me?\"",
            "{Name} smiled and waved. \"Hello! I am {name}. Do you want to play?\"",
        ],
        &[
            "{Friend} smiled and nodded.",
            "\"Yes, please!\" said {friend}.",
        ],
        &[
            "{Friend} had just moved into the house with the big tree in front.",
            "",
        ],
        &[
            "They {play}.",
            "First they {play}. Then they shared {a_food}.",
        ],
        &[
            "They laughed and played until the sun went down.",
            "They laughed so much that their tummies hurt.",
            "",
        ],
        &[
            "From that day on, {name} and {friend} were best friends.",
            "{Name} was glad {he} had said hello.",
        ],
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn stories(text: &str) -> Vec<&str> {
        text.split("\n\n").filter(|s| !s.is_empty()).collect()
    }

    #[test]
    fn same_seed_same_text_different_seed_different_text() {
        assert_eq!(story(7, 3), story(7, 3));
        assert_eq!(generate(1, 50), generate(1, 50));
        assert_ne!(generate(1, 50), generate(2, 50));
        assert_ne!(story(1, 0), story(1, 1));
    }

    #[test]
    fn generate_is_stories_separated_by_blank_lines() {
        let expected: String = (0..20).map(|n| story(5, n) + "\n\n").collect();
        assert_eq!(generate(5, 20), expected);
        assert_eq!(generate(5, 0), "");
        assert!(builtin() == generate(DEFAULT_SEED, DEFAULT_STORIES));
    }

    #[test]
    fn ascii_only_with_no_stray_spaces_or_braces() {
        let text = generate(11, 400);
        for (i, b) in text.bytes().enumerate() {
            assert!(
                b == b'\n' || (0x20..=0x7E).contains(&b),
                "byte {b:#x} at {i}"
            );
            assert!(b != b'{' && b != b'}', "unfilled placeholder at {i}");
        }
        for line in text.lines() {
            assert_eq!(line, line.trim(), "stray space: {line:?}");
            assert!(!line.contains("  "), "double space: {line:?}");
        }
    }

    #[test]
    fn sentences_start_with_capitals_and_lines_end_with_punctuation() {
        let text = generate(3, 400);
        for line in text.lines().filter(|l| !l.is_empty()) {
            assert!(starts_capitalized(line), "line start: {line:?}");
            let last = line.trim_end_matches('"');
            assert!(last.ends_with(['.', '!', '?']), "line end: {line:?}");
            for (i, _) in line.match_indices(['.', '!', '?']) {
                if let Some(rest) = line[i + 1..].strip_prefix(' ') {
                    assert!(
                        starts_capitalized(rest),
                        "after {:?}: {line:?}",
                        &line[..=i]
                    );
                }
            }
        }
    }

    fn starts_capitalized(s: &str) -> bool {
        let s = s.strip_prefix('"').unwrap_or(s);
        s.starts_with(|c: char| c.is_ascii_uppercase())
    }

    #[test]
    fn builtin_size_is_about_a_megabyte() {
        let len = builtin().len();
        assert!(
            (800_000..=1_600_000).contains(&len),
            "builtin() is {len} bytes"
        );
    }

    #[test]
    fn stories_vary() {
        let text = generate(DEFAULT_SEED, 200);
        let all = stories(&text);
        assert_eq!(all.len(), 200);
        let distinct: BTreeSet<&str> = all.iter().copied().collect();
        assert!(
            distinct.len() >= 180,
            "only {} distinct stories",
            distinct.len()
        );
        let words: BTreeSet<String> = text
            .split(|c: char| !c.is_ascii_alphabetic() && c != '\'')
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        assert!(words.len() >= 300, "only {} distinct words", words.len());
    }

    #[test]
    fn story_lengths_are_sane() {
        let text = builtin();
        let all = stories(&text);
        assert_eq!(all.len(), DEFAULT_STORIES);
        for s in &all {
            assert!(
                (200..=1200).contains(&s.len()),
                "story of {} bytes: {s:?}",
                s.len()
            );
        }
        let typical = all
            .iter()
            .filter(|s| (300..=900).contains(&s.len()))
            .count();
        assert!(
            typical * 10 >= all.len() * 9,
            "only {typical} stories of 300..=900 bytes"
        );
    }

    #[test]
    fn every_arc_fills_all_its_templates() {
        for table in [PARENT, ANIMAL, PLACE]
            .into_iter()
            .chain(ARCS.iter().filter_map(|a| a.table))
        {
            assert!(table.rows.iter().all(|r| r.len() == table.keys.len()));
        }
        for (i, &arc) in ARCS.iter().enumerate() {
            assert!(
                arc.slots.iter().all(|s| !s.is_empty()),
                "arc {i} has an empty slot"
            );
            let mut out = String::new();
            for n in 0..100 {
                write_arc(Rng::for_stream(i as u64, n as u64), arc, &mut out);
                out.push_str("\n\n");
            }
            assert!(!out.contains(['{', '}']), "arc {i} left a placeholder");
            for line in out.lines().filter(|l| !l.is_empty()) {
                assert!(starts_capitalized(line), "arc {i}: {line:?}");
            }
        }
    }
}
