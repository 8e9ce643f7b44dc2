//! PIDF presence documents (RFC 3863) with the data model's person (RFC 4479) and RPID
//! activities (RFC 4480): the `application/pidf+xml` bodies of NOTIFY and PUBLISH.
//!
//! [`Presence`] is the part of a document Herald maps to and from availability: tuples with
//! their basic status, contact and notes; presence-level notes; the person's activities and
//! notes. [`Presence::to_xml`] writes a document in schema order; [`Presence::parse`] reads
//! one with `rxml` (no DTD, no entities beyond XML's own, so no entity expansion attacks),
//! bounded by [`PidfLimits`], ignoring elements it does not know (Lync's category extensions,
//! timestamps, device elements).

use std::fmt::Write;

use rxml::error::EndOrError;
use rxml::{Event, Options, Parse, Parser, WithOptions};

/// The PIDF namespace.
pub const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
/// The presence data model namespace (person, device, note).
pub const NS_DM: &str = "urn:ietf:params:xml:ns:pidf:data-model";
/// The RPID namespace.
pub const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";
/// The content type of a PIDF body.
pub const CONTENT_TYPE: &str = "application/pidf+xml";

/// A tuple's basic status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basic {
    /// `open`: able to receive.
    Open,
    /// `closed`.
    Closed,
}

macro_rules! activities {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// An RPID activity (RFC 4480 §3.2).
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum Activity {
            $( $(#[$doc])* $variant, )*
            /// `<rpid:other>text</rpid:other>`.
            Other(String),
        }

        const ACTIVITIES: &[(Activity, &str)] = &[ $( (Activity::$variant, $name), )* ];
    };
}

activities! {
    /// `appointment`.
    Appointment = "appointment",
    /// `away`.
    Away = "away",
    /// `breakfast`.
    Breakfast = "breakfast",
    /// `busy`.
    Busy = "busy",
    /// `dinner`.
    Dinner = "dinner",
    /// `holiday`.
    Holiday = "holiday",
    /// `in-transit`.
    InTransit = "in-transit",
    /// `looking-for-work`.
    LookingForWork = "looking-for-work",
    /// `meal`.
    Meal = "meal",
    /// `meeting`.
    Meeting = "meeting",
    /// `on-the-phone`.
    OnThePhone = "on-the-phone",
    /// `performance`.
    Performance = "performance",
    /// `permanent-absence`.
    PermanentAbsence = "permanent-absence",
    /// `playing`.
    Playing = "playing",
    /// `presentation`.
    Presentation = "presentation",
    /// `shopping`.
    Shopping = "shopping",
    /// `sleeping`.
    Sleeping = "sleeping",
    /// `spectator`.
    Spectator = "spectator",
    /// `steering`.
    Steering = "steering",
    /// `travel`.
    Travel = "travel",
    /// `tv`.
    Tv = "tv",
    /// `unknown`.
    Unknown = "unknown",
    /// `vacation`.
    Vacation = "vacation",
    /// `working`.
    Working = "working",
    /// `worship`.
    Worship = "worship",
}

impl Activity {
    /// The element name (`other` for [`Activity::Other`]).
    pub fn name(&self) -> &str {
        match self {
            Activity::Other(_) => "other",
            a => ACTIVITIES
                .iter()
                .find(|(x, _)| x == a)
                .map(|(_, n)| *n)
                .unwrap_or("unknown"),
        }
    }

    fn from_name(name: &str) -> Option<Activity> {
        ACTIVITIES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(a, _)| a.clone())
    }
}

/// A `<tuple>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple {
    /// The `id` attribute.
    pub id: String,
    /// `<status><basic>`.
    pub basic: Option<Basic>,
    /// `<contact>`.
    pub contact: Option<String>,
    /// `<note>`s.
    pub notes: Vec<String>,
}

/// A `<dm:person>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The `id` attribute.
    pub id: String,
    /// `<rpid:activities>` children.
    pub activities: Vec<Activity>,
    /// `<dm:note>`s.
    pub notes: Vec<String>,
}

/// A presence document. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The `entity` attribute (`sip:` or `pres:` URI of the presentity).
    pub entity: String,
    /// Tuples in order.
    pub tuples: Vec<Tuple>,
    /// Presence-level `<note>`s.
    pub notes: Vec<String>,
    /// The person, if any.
    pub person: Option<Person>,
}

/// Bounds on documents accepted by [`Presence::parse_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidfLimits {
    /// Largest document in bytes.
    pub max_bytes: usize,
    /// Deepest element nesting (the root is depth 1).
    pub max_depth: usize,
    /// Most tuples, notes and activities together.
    pub max_items: usize,
}

impl Default for PidfLimits {
    fn default() -> Self {
        PidfLimits {
            max_bytes: 65_536,
            max_depth: 16,
            max_items: 64,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidfError {
    /// Larger than [`PidfLimits::max_bytes`].
    #[error("document larger than {0} bytes")]
    TooLarge(usize),
    /// Nested deeper than [`PidfLimits::max_depth`].
    #[error("elements nested deeper than {0}")]
    TooDeep(usize),
    /// More than [`PidfLimits::max_items`] tuples, notes and activities.
    #[error("more than {0} tuples, notes and activities")]
    TooManyItems(usize),
    /// Not well-formed XML, or XML outside what rxml accepts (DTD, PI).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// Well-formed but not a PIDF document.
    #[error("not a PIDF document: {0}")]
    NotPidf(&'static str),
}

impl Presence {
    /// A document with one tuple (`id="herald"`) carrying `basic` and, when there are
    /// activities or a note, a person (`id="p"`) carrying them; the note also goes on the
    /// tuple for clients that only read PIDF.
    pub fn new(entity: &str, basic: Basic, note: Option<&str>, activities: Vec<Activity>) -> Self {
        let notes: Vec<String> = note.map(str::to_string).into_iter().collect();
        let person = (!activities.is_empty() || !notes.is_empty()).then(|| Person {
            id: "p".into(),
            activities,
            notes: notes.clone(),
        });
        Presence {
            entity: entity.to_string(),
            tuples: vec![Tuple {
                id: "herald".into(),
                basic: Some(basic),
                contact: None,
                notes,
            }],
            notes: Vec::new(),
            person,
        }
    }

    /// Open if any tuple is open, else closed (no tuples: closed).
    pub fn basic(&self) -> Basic {
        if self.tuples.iter().any(|t| t.basic == Some(Basic::Open)) {
            Basic::Open
        } else {
            Basic::Closed
        }
    }

    /// The most specific note: the person's, then a tuple's, then the document's.
    pub fn note(&self) -> Option<&str> {
        let person = self.person.iter().flat_map(|p| p.notes.iter());
        let tuples = self.tuples.iter().flat_map(|t| t.notes.iter());
        person
            .chain(tuples)
            .chain(self.notes.iter())
            .map(String::as_str)
            .find(|n| !n.trim().is_empty())
    }

    /// The person's activities (empty without a person).
    pub fn activities(&self) -> &[Activity] {
        self.person.as_ref().map_or(&[], |p| &p.activities)
    }

    /// The document as UTF-8 XML, children in schema order.
    pub fn to_xml(&self) -> String {
        let mut x = String::with_capacity(512);
        x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<presence xmlns=\"{NS_PIDF}\" xmlns:dm=\"{NS_DM}\" xmlns:rpid=\"{NS_RPID}\" entity=\"{}\">",
            escape_attr(&self.entity)
        );
        for t in &self.tuples {
            let _ = write!(x, "<tuple id=\"{}\"><status>", escape_attr(&t.id));
            if let Some(b) = t.basic {
                let b = if b == Basic::Open { "open" } else { "closed" };
                let _ = write!(x, "<basic>{b}</basic>");
            }
            x.push_str("</status>");
            if let Some(c) = &t.contact {
                let _ = write!(x, "<contact>{}</contact>", escape(c));
            }
            for n in &t.notes {
                let _ = write!(x, "<note>{}</note>", escape(n));
            }
            x.push_str("</tuple>\n");
        }
        for n in &self.notes {
            let _ = writeln!(x, "<note>{}</note>", escape(n));
        }
        if let Some(p) = &self.person {
            let _ = write!(x, "<dm:person id=\"{}\">", escape_attr(&p.id));
            if !p.activities.is_empty() {
                x.push_str("<rpid:activities>");
                for a in &p.activities {
                    match a {
                        Activity::Other(t) => {
                            let _ = write!(x, "<rpid:other>{}</rpid:other>", escape(t));
                        }
                        a => {
                            let _ = write!(x, "<rpid:{}/>", a.name());
                        }
                    }
                }
                x.push_str("</rpid:activities>");
            }
            for n in &p.notes {
                let _ = write!(x, "<dm:note>{}</dm:note>", escape(n));
            }
            x.push_str("</dm:person>\n");
        }
        x.push_str("</presence>\n");
        x
    }

    /// Parses a document with the default limits.
    pub fn parse(doc: &[u8]) -> Result<Presence, PidfError> {
        Presence::parse_with(doc, PidfLimits::default())
    }

    /// Parses a document.
    pub fn parse_with(doc: &[u8], limits: PidfLimits) -> Result<Presence, PidfError> {
        if doc.len() > limits.max_bytes {
            return Err(PidfError::TooLarge(limits.max_bytes));
        }
        let opts = Options {
            max_token_length: limits.max_bytes.clamp(64, 8192),
            ..Options::default()
        };
        let mut parser = <Parser as WithOptions>::with_options(opts);
        let mut input = doc;
        let mut reader = Reader::new(limits);
        loop {
            match parser.parse(&mut input, true) {
                Ok(Some(ev)) => reader.event(ev)?,
                Ok(None) => break,
                Err(EndOrError::NeedMoreData) => {
                    return Err(PidfError::Xml("truncated document".into()))
                }
                Err(EndOrError::Error(e)) => return Err(PidfError::Xml(e.to_string())),
            }
        }
        reader.finish()
    }
}

/// Where text is being collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    Basic,
    Contact,
    TupleNote,
    PresenceNote,
    PersonNote,
    OtherActivity,
}

/// The event consumer behind [`Presence::parse_with`].
struct Reader {
    limits: PidfLimits,
    /// (namespace, local name) of open elements.
    stack: Vec<(String, String)>,
    doc: Option<Presence>,
    text: Option<(Text, String)>,
    items: usize,
}

impl Reader {
    fn new(limits: PidfLimits) -> Self {
        Reader {
            limits,
            stack: Vec::new(),
            doc: None,
            text: None,
            items: 0,
        }
    }

    fn item(&mut self) -> Result<(), PidfError> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(PidfError::TooManyItems(self.limits.max_items));
        }
        Ok(())
    }

    fn event(&mut self, ev: Event) -> Result<(), PidfError> {
        match ev {
            Event::XmlDeclaration(..) => Ok(()),
            Event::StartElement(_, (ns, name), attrs) => {
                let ns = ns.as_str().to_string();
                let name = name.as_str().to_string();
                let id = attrs
                    .get(&rxml::Namespace::NONE, "id")
                    .map(|v| v.as_str().to_string());
                let entity = attrs
                    .get(&rxml::Namespace::NONE, "entity")
                    .map(|v| v.as_str().to_string());
                self.start(ns, name, id, entity)
            }
            Event::EndElement(_) => {
                self.end();
                Ok(())
            }
            Event::Text(_, t) => {
                if let Some((_, buf)) = &mut self.text {
                    buf.push_str(&t);
                }
                Ok(())
            }
        }
    }

    fn parent(&self) -> Option<(&str, &str)> {
        self.stack.last().map(|(n, l)| (n.as_str(), l.as_str()))
    }

    fn start(
        &mut self,
        ns: String,
        name: String,
        id: Option<String>,
        entity: Option<String>,
    ) -> Result<(), PidfError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(PidfError::TooDeep(self.limits.max_depth));
        }
        let parent = self.parent().map(|(a, b)| (a.to_string(), b.to_string()));
        let here = (ns.as_str(), name.as_str());
        let parent = parent.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        match (parent, here) {
            (None, (NS_PIDF, "presence")) => {
                let entity = entity.ok_or(PidfError::NotPidf("presence without entity"))?;
                self.doc = Some(Presence {
                    entity,
                    tuples: Vec::new(),
                    notes: Vec::new(),
                    person: None,
                });
            }
            (None, _) => return Err(PidfError::NotPidf("root is not pidf:presence")),
            (Some((NS_PIDF, "presence")), (NS_PIDF, "tuple")) => {
                self.item()?;
                self.doc_mut().tuples.push(Tuple {
                    id: id.unwrap_or_default(),
                    basic: None,
                    contact: None,
                    notes: Vec::new(),
                });
            }
            (Some((NS_PIDF, "presence")), (NS_PIDF, "note")) => {
                self.item()?;
                self.collect(Text::PresenceNote)
            }
            // RFC 4479 allows one person per presentity: the content of a second one is
            // read into the first.
            (Some((NS_PIDF, "presence")), (NS_DM, "person")) if self.doc_mut().person.is_none() => {
                self.doc_mut().person = Some(Person {
                    id: id.unwrap_or_default(),
                    activities: Vec::new(),
                    notes: Vec::new(),
                });
            }
            (Some((NS_PIDF, "status")), (NS_PIDF, "basic"))
                if self.grandparent_is(NS_PIDF, "tuple") =>
            {
                self.collect(Text::Basic)
            }
            (Some((NS_PIDF, "tuple")), (NS_PIDF, "contact")) => self.collect(Text::Contact),
            (Some((NS_PIDF, "tuple")), (NS_PIDF, "note")) => {
                self.item()?;
                self.collect(Text::TupleNote)
            }
            (Some((NS_DM, "person")), (NS_DM, "note")) => {
                self.item()?;
                self.collect(Text::PersonNote)
            }
            (Some((NS_RPID, "activities")), (NS_RPID, local))
                if self.grandparent_is(NS_DM, "person") =>
            {
                self.item()?;
                if local == "other" {
                    self.collect(Text::OtherActivity);
                } else if let Some(a) = Activity::from_name(local) {
                    if let Some(p) = &mut self.doc_mut().person {
                        p.activities.push(a);
                    }
                }
            }
            _ => {}
        }
        self.stack.push((ns, name));
        Ok(())
    }

    /// Whether the parent of the current element is `{ns}local`.
    fn grandparent_is(&self, ns: &str, local: &str) -> bool {
        self.stack.len() >= 2 && {
            let (n, l) = &self.stack[self.stack.len() - 2];
            n == ns && l == local
        }
    }

    fn collect(&mut self, what: Text) {
        self.text = Some((what, String::new()));
    }

    fn doc_mut(&mut self) -> &mut Presence {
        // Only called below the root, which created the document.
        self.doc.get_or_insert_with(|| Presence {
            entity: String::new(),
            tuples: Vec::new(),
            notes: Vec::new(),
            person: None,
        })
    }

    fn end(&mut self) {
        self.stack.pop();
        let Some((what, text)) = self.text.take() else {
            return;
        };
        let doc = self.doc_mut();
        match what {
            Text::Basic => {
                if let Some(t) = doc.tuples.last_mut() {
                    t.basic = match text.trim() {
                        "open" => Some(Basic::Open),
                        "closed" => Some(Basic::Closed),
                        _ => None,
                    };
                }
            }
            Text::Contact => {
                if let Some(t) = doc.tuples.last_mut() {
                    t.contact = Some(text.trim().to_string());
                }
            }
            Text::TupleNote => {
                if let Some(t) = doc.tuples.last_mut() {
                    t.notes.push(text);
                }
            }
            Text::PresenceNote => doc.notes.push(text),
            Text::PersonNote => {
                if let Some(p) = &mut doc.person {
                    p.notes.push(text);
                }
            }
            Text::OtherActivity => {
                if let Some(p) = &mut doc.person {
                    p.activities.push(Activity::Other(text));
                }
            }
        }
    }

    fn finish(self) -> Result<Presence, PidfError> {
        self.doc.ok_or(PidfError::NotPidf("empty document"))
    }
}

/// Escapes text: `&`, `<`, `>`, `"` as entities, CR as a character reference (a parser
/// would turn a raw one into LF), and drops characters XML 1.0 cannot carry (other C0
/// controls, U+FFFE, U+FFFF).
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    escape_with(s, false)
}

/// Escapes an attribute value: as [`escape`], plus tab and LF as character references
/// (a parser would normalize raw ones to spaces).
fn escape_attr(s: &str) -> std::borrow::Cow<'_, str> {
    escape_with(s, true)
}

fn escape_with(s: &str, attr: bool) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| {
        !matches!(c, '&' | '<' | '>' | '"' | '\r' | '\u{fffe}' | '\u{ffff}')
            && (c >= ' ' || (!attr && (c == '\t' || c == '\n')))
    };
    if s.chars().all(plain) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\t' if attr => out.push_str("&#9;"),
            '\n' if attr => out.push_str("&#10;"),
            c if plain(c) => out.push(c),
            _ => {}
        }
    }
    out.into()
}

#[cfg(test)]
mod tests;
