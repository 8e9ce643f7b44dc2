//! One cell of a mapping table, as the seed prints it: a state, optionally followed by
//! `with status message` or `with status “text”` (curly or straight quotes).

use std::fmt;

use super::model::{normalize_words, Availability, State};

/// What a cell says about the status text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatusSpec {
    /// No status clause ("Away"). As a source: any status text. As a target: the source's free
    /// text is carried over (MAP-5), unless the source cell named a text, which the state
    /// then stands for ("Away with status 'Idle'" → "Idle").
    Plain,
    /// `with status message`. As a source: any status text. As a target: the source's status
    /// text, whatever it is, is carried over (Table 4).
    Message,
    /// `with status “text”`. As a source: only this text (ignoring case and spacing). As a
    /// target: this text.
    Text(String),
}

/// One parsed cell.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cell {
    /// The state named.
    pub state: State,
    /// The status clause.
    pub status: StatusSpec,
}

/// Why a cell did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    /// The cell is empty.
    #[error("empty cell")]
    Empty,
    /// The state name is not one of the seed's states.
    #[error("unknown state {0:?}")]
    UnknownState(String),
    /// The status clause is neither `message` nor a quoted, non-empty text.
    #[error("status clause {0:?} is neither `message` nor a quoted text")]
    BadStatus(String),
}

const WITH_STATUS: &str = " with status ";

impl Cell {
    /// A cell with no status clause.
    pub fn plain(state: State) -> Self {
        Cell {
            state,
            status: StatusSpec::Plain,
        }
    }

    /// Parses a cell ("Away with status “In a meeting”").
    pub fn parse(text: &str) -> Result<Cell, CellError> {
        let text = normalize_words(text);
        if text.is_empty() {
            return Err(CellError::Empty);
        }
        // ASCII lower-casing keeps byte offsets, so `at` indexes `text` too.
        let lower = text.to_ascii_lowercase();
        let (state_text, status) = match lower.find(WITH_STATUS) {
            None => (text.as_str(), StatusSpec::Plain),
            Some(at) => {
                let clause = &text[at + WITH_STATUS.len()..];
                (&text[..at], parse_status(clause)?)
            }
        };
        let state = State::from_label(state_text)
            .ok_or_else(|| CellError::UnknownState(state_text.to_owned()))?;
        Ok(Cell { state, status })
    }

    /// True when `a` is described by this cell used as a source.
    pub fn matches(&self, a: &Availability) -> bool {
        self.state == a.state
            && match &self.status {
                StatusSpec::Text(t) => a.status_is(t),
                StatusSpec::Plain | StatusSpec::Message => true,
            }
    }

    /// The availability this cell, used as a target, gives for `input`, which matched the source
    /// cell `source`. The overlay is carried over.
    pub fn render(&self, source: &Cell, input: &Availability) -> Availability {
        let status = match (&self.status, &source.status) {
            (StatusSpec::Text(t), _) => Some(t.clone()),
            (StatusSpec::Message, _) => input.status.clone(),
            (StatusSpec::Plain, StatusSpec::Text(_)) => None,
            (StatusSpec::Plain, _) => input.status.clone(),
        };
        Availability {
            state: self.state,
            status,
            overlay: input.overlay,
        }
    }

    /// The availability a source cell stands for, with `free_text` as the status when the
    /// cell names none (used to build test inputs and examples).
    pub fn example(&self, free_text: Option<&str>) -> Availability {
        let status = match &self.status {
            StatusSpec::Text(t) => Some(t.clone()),
            StatusSpec::Plain | StatusSpec::Message => free_text.map(str::to_owned),
        };
        Availability {
            state: self.state,
            status,
            overlay: None,
        }
    }
}

fn parse_status(clause: &str) -> Result<StatusSpec, CellError> {
    if clause.eq_ignore_ascii_case("message") {
        return Ok(StatusSpec::Message);
    }
    let inner = clause
        .strip_prefix(['"', '“'])
        .and_then(|c| c.strip_suffix(['"', '”']))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| CellError::BadStatus(clause.to_owned()))?;
    Ok(StatusSpec::Text(inner.to_owned()))
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.state.label())?;
        match &self.status {
            StatusSpec::Plain => Ok(()),
            StatusSpec::Message => f.write_str(" with status message"),
            StatusSpec::Text(t) => write!(f, " with status \"{t}\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(state: State, t: &str) -> Cell {
        Cell {
            state,
            status: StatusSpec::Text(t.to_owned()),
        }
    }

    #[test]
    fn parse_table() {
        let cases: Vec<(&str, Result<Cell, CellError>)> = vec![
            ("Available", Ok(Cell::plain(State::Available))),
            ("  Do Not  Disturb ", Ok(Cell::plain(State::DoNotDisturb))),
            (
                "Available with status message",
                Ok(Cell {
                    state: State::Available,
                    status: StatusSpec::Message,
                }),
            ),
            (
                "Available with status “In a meeting”",
                Ok(text(State::Available, "In a meeting")),
            ),
            ("Away with status \"Idle\"", Ok(text(State::Away, "Idle"))),
            ("away WITH STATUS \"Busy\"", Ok(text(State::Away, "Busy"))),
            ("", Err(CellError::Empty)),
            ("Lunch", Err(CellError::UnknownState("Lunch".into()))),
            (
                "Away with status Idle",
                Err(CellError::BadStatus("Idle".into())),
            ),
            (
                "Away with status \"\"",
                Err(CellError::BadStatus("\"\"".into())),
            ),
            (
                "Lunch with status message",
                Err(CellError::UnknownState("Lunch".into())),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Cell::parse(input), want, "{input:?}");
        }
    }

    #[test]
    fn display_parses_back() {
        let cells = [
            Cell::plain(State::ExtendedAway),
            Cell {
                state: State::Away,
                status: StatusSpec::Message,
            },
            text(State::Away, "In a meeting"),
        ];
        for cell in cells {
            assert_eq!(Cell::parse(&cell.to_string()), Ok(cell));
        }
    }

    #[test]
    fn matching_and_rendering() {
        let idle = text(State::Away, "Idle");
        let away = Cell::plain(State::Away);
        assert!(idle.matches(&Availability::with_status(State::Away, "idle")));
        assert!(!idle.matches(&Availability::new(State::Away)));
        assert!(away.matches(&Availability::with_status(State::Away, "lunch")));
        assert!(!away.matches(&Availability::new(State::Busy)));

        let input = Availability::with_status(State::Away, "lunch");
        let message = Cell {
            state: State::Available,
            status: StatusSpec::Message,
        };
        assert_eq!(
            Cell::plain(State::Away)
                .render(&away, &input)
                .status
                .as_deref(),
            Some("lunch")
        );
        assert_eq!(
            message.render(&away, &input).status.as_deref(),
            Some("lunch")
        );
        let idle_in = Availability::with_status(State::Away, "Idle");
        assert_eq!(
            Cell::plain(State::Idle).render(&idle, &idle_in).status,
            None
        );
        assert_eq!(
            message.render(&idle, &idle_in).status.as_deref(),
            Some("Idle")
        );
        assert_eq!(
            text(State::Away, "Busy")
                .render(&away, &input)
                .status
                .as_deref(),
            Some("Busy")
        );
    }
}
