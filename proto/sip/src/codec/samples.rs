//! Real-looking messages for the tests (shapes seen from Lync/Skype for Business, Kamailio and
//! SIP user agents).

pub const INVITE: &str = "INVITE sip:alice@herald.example;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS edge.partner.example:5061;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: \"Alice\" <sip:alice@herald.example>\r\n\
From: \"Bob, the builder\" <sip:bob@partner.example>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.partner.example\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@10.0.0.7:5061;transport=tls>\r\n\
Record-Route: <sip:edge.partner.example;transport=tls;lr>\r\n\
Supported: ms-dialog-route-set-update, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 133\r\n\
\r\n\
v=0\r\n\
o=bob 2890844526 2890844526 IN IP4 10.0.0.7\r\n\
s=-\r\n\
c=IN IP4 10.0.0.7\r\n\
t=0 0\r\n\
m=message 5060 sip null\r\n\
a=accept-types:text/plain\r\n";

pub const MESSAGE: &str = "MESSAGE sip:alice@herald.example SIP/2.0\r\n\
v: SIP/2.0/TCP 192.0.2.4:5060;branch=z9hG4bKnashds8\r\n\
Max-Forwards: 69\r\n\
t: <sip:alice@herald.example>;tag=a73kszlfl\r\n\
f: <sip:bob@partner.example>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.partner.example\r\n\
CSeq: 2 MESSAGE\r\n\
c: text/plain;charset=UTF-8\r\n\
l: 26\r\n\
\r\n\
Hello, Alice! ça va? 🦀";

pub const SUBSCRIBE: &str = "SUBSCRIBE sip:alice@herald.example SIP/2.0\r\n\
Via: SIP/2.0/TLS 198.51.100.20:5061;branch=z9hG4bK-sub-1,\r\n \
SIP/2.0/TLS 198.51.100.1:5061;branch=z9hG4bK-sub-0;received=198.51.100.1\r\n\
Max-Forwards: 70\r\n\
From: <sip:bob@partner.example>;tag=sub-tag-9\r\n\
To: <sip:alice@herald.example>\r\n\
Call-ID: sub-4711@partner.example\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Contact: <sip:bob@198.51.100.20:5061;transport=tls>\r\n\
Event: presence\r\n\
Expires: 6300\r\n\
Accept: application/pidf+xml,\r\n\
\tapplication/rlmi+xml\r\n\
Supported: eventlist\r\n\
Allow-Events: presence, presence.winfo\r\n\
Content-Length: 0\r\n\
\r\n";

pub const NOTIFY: &str = "NOTIFY sip:bob@198.51.100.20:5061;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS herald-0.herald.example:5061;branch=z9hG4bK.n1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@herald.example>;tag=h-77\r\n\
To: <sip:bob@partner.example>;tag=sub-tag-9\r\n\
Call-ID: sub-4711@partner.example\r\n\
CSeq: 1 NOTIFY\r\n\
Contact: <sip:herald-0.herald.example:5061;transport=tls>\r\n\
Event: presence\r\n\
Subscription-State: active;expires=6300\r\n\
Content-Type: application/pidf+xml\r\n\
Content-Length: 395\r\n\
\r\n\
<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" \
xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" entity=\"sip:alice@herald.example\">\n\
<tuple id=\"t1\"><status><basic>open</basic></status></tuple>\n\
<dm:person id=\"p1\"><rpid:activities><rpid:busy/></rpid:activities><dm:note>In a call</dm:note></dm:person>\n\
</presence>\n";

pub const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/TLS 198.51.100.20:5061;branch=z9hG4bK-sub-1\r\n\
Via: SIP/2.0/TLS 198.51.100.1:5061;branch=z9hG4bK-sub-0;received=198.51.100.1\r\n\
From: <sip:bob@partner.example>;tag=sub-tag-9\r\n\
To: <sip:alice@herald.example>;tag=h-77\r\n\
Call-ID: sub-4711@partner.example\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Contact: <sip:herald-0.herald.example:5061;transport=tls>\r\n\
Expires: 6300\r\n\
Content-Length: 0\r\n\
\r\n";

pub const NOT_EXIST: &str = "SIP/2.0 481 Call/Transaction Does Not Exist\r\n\
Via: SIP/2.0/TLS herald-0.herald.example:5061;branch=z9hG4bK.n2\r\n\
From: <sip:alice@herald.example>;tag=h-77\r\n\
To: <sip:bob@partner.example>;tag=sub-tag-9\r\n\
Call-ID: sub-4711@partner.example\r\n\
CSeq: 2 NOTIFY\r\n\
Server: Kamailio (5.7.4 (x86_64/linux))\r\n\
Content-Length: 0\r\n\
\r\n";

pub const ALL: [&str; 6] = [INVITE, MESSAGE, SUBSCRIBE, NOTIFY, OK, NOT_EXIST];
