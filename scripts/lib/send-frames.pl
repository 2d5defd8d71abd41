# Writes raw Ethernet frames onto an interface through an AF_PACKET socket, as any process with
# CAP_NET_RAW (which containers keep) can: Berth's tests use it to spoof from inside a sandbox.
#
#   perl send-frames.pl IFNAME COUNT ETH_DST ETH_SRC arp OPERATION SENDER_MAC SENDER_IP TARGET_MAC TARGET_IP
#   perl send-frames.pl IFNAME COUNT ETH_DST ETH_SRC udp SOURCE_IP DEST_IP DEST_PORT PAYLOAD
#
# COUNT frames, one every 100 ms. OPERATION is 1 (request) or 2 (reply).
use strict;
use warnings;
use Socket qw(inet_aton);

my ($ifname, $count, $eth_dst, $eth_src, $kind, @fields) = @ARGV;
die "usage: IFNAME COUNT ETH_DST ETH_SRC arp|udp ...\n" unless defined $kind;

sub mac {
    my @bytes = split /:/, $_[0];
    die "bad MAC address $_[0]\n" unless @bytes == 6;
    return pack 'C6', map { hex } @bytes;
}

sub ipv4 { return inet_aton($_[0]) // die "bad IPv4 address $_[0]\n" }

sub checksum {
    my $sum = 0;
    $sum += $_ for unpack 'n*', $_[0] . (length($_[0]) % 2 ? "\0" : '');
    $sum = ($sum & 0xffff) + ($sum >> 16) while $sum > 0xffff;
    return ~$sum & 0xffff;
}

my ($ethertype, $payload);
if ($kind eq 'arp') {
    my ($operation, $sha, $spa, $tha, $tpa) = @fields;
    $ethertype = 0x0806;
    $payload = pack('nnCCn', 1, 0x0800, 6, 4, $operation)
      . mac($sha) . ipv4($spa) . mac($tha) . ipv4($tpa);
} elsif ($kind eq 'udp') {
    my ($source, $dest, $port, $data) = @fields;
    $ethertype = 0x0800;
    my $udp = pack('nnnn', 40000, $port, 8 + length $data, 0) . $data;
    my $header = pack('CCnnnCCn', 0x45, 0, 20 + length $udp, 0, 0x4000, 64, 17, 0)
      . ipv4($source) . ipv4($dest);
    substr($header, 10, 2) = pack 'n', checksum($header);
    $payload = $header . $udp;
} else {
    die "unknown frame kind $kind\n";
}
my $frame = mac($eth_dst) . mac($eth_src) . pack('n', $ethertype) . $payload;

# AF_PACKET (17), SOCK_RAW (3); protocol 0: send only.
socket(my $socket, 17, 3, 0) or die "socket(AF_PACKET): $!\n";
my $request = pack 'a16 x16', $ifname;
ioctl($socket, 0x8933, $request) or die "SIOCGIFINDEX $ifname: $!\n";
my $ifindex = unpack 'x16 i', $request;
# struct sockaddr_ll: family, protocol, ifindex, hatype (ARPHRD_ETHER), pkttype, halen, addr.
my $to = pack 'S n i S C C a8', 17, $ethertype, $ifindex, 1, 0, 6, mac($eth_dst);
for (1 .. $count) {
    send($socket, $frame, 0, $to) or die "send: $!\n";
    select undef, undef, undef, 0.1;
}
