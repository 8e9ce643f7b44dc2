//! Criterion micro-benchmarks of the XMPP hot codecs: stream decode (`Decoder`) and stanza
//! encode (`encode`). `cargo bench -p herald-bench`; CI runs `-- --test`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use herald_xmpp::codec::{encode, Decoder, Limits, StreamEvent};
use herald_xmpp::{ns, Element};
use std::hint::black_box;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='example.test' version='1.0'>";

fn chat_message(i: usize) -> String {
    format!(
        "<message to='u{}@example.test' from='u{i}@example.test/lg' type='chat' id='m{i}'>\
         <body>0:{}</body></message>",
        i ^ 1,
        1_000_000 + i
    )
}

fn presence(i: usize) -> String {
    format!(
        "<presence from='u{i}@example.test/lg'><show>away</show><status>1:{}</status>\
         <priority>5</priority></presence>",
        1_000_000 + i
    )
}

/// Decodes `input` in chunks of `chunk` bytes; returns the number of stanzas.
fn decode(input: &[u8], chunk: usize) -> usize {
    let mut dec = Decoder::new(Limits::default());
    let mut n = 0;
    for part in input.chunks(chunk) {
        dec.feed(part);
        while let Ok(Some(ev)) = dec.next() {
            if let StreamEvent::Stanza(e) = ev {
                black_box(&e);
                n += 1;
            }
        }
    }
    n
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, make) in [
        ("message", chat_message as fn(usize) -> String),
        ("presence", presence),
    ] {
        let mut input = HEADER.to_string();
        for i in 0..100 {
            input.push_str(&make(i));
        }
        let bytes = input.into_bytes();
        g.throughput(Throughput::Elements(100));
        for chunk in [4096usize, 64] {
            g.bench_function(format!("{name}_x100_chunk{chunk}"), |b| {
                b.iter(|| decode(black_box(&bytes), chunk))
            });
        }
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let msg = Element::new("message", ns::CLIENT)
        .attr("to", "u2@example.test")
        .attr("from", "u1@example.test/lg")
        .attr("type", "chat")
        .attr("id", "m1")
        .child(Element::new("body", ns::CLIENT).text_node("hello <world> & 'you'"));
    g.bench_function("message", |b| {
        b.iter(|| encode(black_box(&msg), ns::CLIENT))
    });
    let mut roster = Element::new("query", ns::ROSTER);
    for i in 0..50 {
        roster.push(
            Element::new("item", ns::ROSTER)
                .attr("jid", format!("u{i}@example.test"))
                .attr("subscription", "both")
                .child(Element::new("group", ns::ROSTER).text_node("bench")),
        );
    }
    let iq = Element::new("iq", ns::CLIENT)
        .attr("type", "result")
        .attr("id", "r1")
        .child(roster);
    g.bench_function("roster_result_50", |b| {
        b.iter_batched(
            || iq.clone(),
            |e| encode(&e, ns::CLIENT),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
