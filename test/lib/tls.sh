# test/lib/tls.sh -- throw-away TLS certificates for tests (source this file).
#
#   tls_make DIR     make, with openssl, in DIR (unless DIR/client.pem exists):
#                      ca.pem ca.key          a self-signed CA ("evrep test CA")
#                      server.pem server.key  signed by it; CN=localhost,
#                                             subjectAltName DNS:localhost,
#                                             DNS:127.0.0.1, IP:127.0.0.1,
#                                             extendedKeyUsage serverAuth
#                      client.pem client.key  signed by it; CN=guest, clientAuth
#                    (DNS:127.0.0.1 is there because rabbitmq-c 0.11 checks the
#                    host name only against DNS names.) The keys are test keys:
#                    the directory is made readable by everyone, so that a
#                    PostgreSQL server running as user postgres can read the
#                    client key.
#   tls_file DIR ca|cert|key|server_cert|server_key   path of one of them
#                    (cert and key are the client's)
#   tls_server_cert DIR NAME SAN   another server certificate signed by DIR's
#                    CA (after tls_make DIR): DIR/NAME.pem and DIR/NAME.key,
#                    serverAuth, CN and subjectAltName from SAN (e.g.
#                    "DNS:wrong.example"; CN is its first name); for tests of
#                    host name checks
#
# Environment: EVREP_TLS_DAYS (validity, default 30).

[[ -n "${_EVREP_TLS_SH:-}" ]] && return 0
_EVREP_TLS_SH=1

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

tls_file() {
    local dir=${1:?usage: tls_file DIR WHAT} f
    case "${2:-}" in
        ca) f=ca.pem ;;
        cert) f=client.pem ;;
        key) f=client.key ;;
        server_cert) f=server.pem ;;
        server_key) f=server.key ;;
        *) evrep_err "tls_file: unknown '${2:-}' (ca|cert|key|server_cert|server_key)"; return 1 ;;
    esac
    printf '%s/%s\n' "$dir" "$f"
}

# _tls_sign DIR NAME SUBJECT EXTENSIONS -- key and certificate NAME signed by DIR's CA
_tls_sign() {
    local dir=$1 name=$2 subj=$3 ext=$4
    openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -subj "$subj" \
        -out "$dir/$name.csr" 2>>"$dir/openssl.log" || return 1
    printf '%s\n' "$ext" >"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days "${EVREP_TLS_DAYS:-30}" -sha256 -extfile "$dir/$name.ext" \
        -out "$dir/$name.pem" 2>>"$dir/openssl.log" || return 1
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}

tls_server_cert() {
    local dir=${1:?usage: tls_server_cert DIR NAME SAN} name=${2:?usage: tls_server_cert DIR NAME SAN} san=${3:?usage: tls_server_cert DIR NAME SAN} cn
    [[ -s "$dir/ca.pem" && -s "$dir/ca.key" ]] || { evrep_err "tls_server_cert: no CA in $dir (tls_make first)"; return 1; }
    [[ "$name" =~ ^[A-Za-z0-9_-]+$ && ! "$name" =~ ^(ca|server|client)$ ]] || { evrep_err "tls_server_cert: bad name '$name' (ca, server, client are tls_make's)"; return 1; }
    cn=${san%%,*} cn=${cn#*:}
    _tls_sign "$dir" "$name" "/CN=$cn" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san" || { evrep_err "tls_server_cert: openssl failed in $dir"; evrep_tail "$dir/openssl.log" 20; return 1; }
    chmod 644 "$dir/$name.pem" "$dir/$name.key"
}

tls_make() {
    local dir=${1:?usage: tls_make DIR}
    [[ -s "$dir/client.pem" && -s "$dir/server.pem" && -s "$dir/ca.pem" ]] && return 0
    command -v openssl >/dev/null || { evrep_err "tls_make: openssl not found (apt-get install openssl)"; return 1; }
    mkdir -p "$dir" || return 1
    : >"$dir/openssl.log"
    if ! openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" \
            -days "${EVREP_TLS_DAYS:-30}" -sha256 -subj "/CN=evrep test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            2>>"$dir/openssl.log" \
       || ! _tls_sign "$dir" server "/CN=localhost" \
            "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1" \
       || ! _tls_sign "$dir" client "/CN=guest" \
            "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"; then
        evrep_err "tls_make: openssl failed in $dir"; evrep_tail "$dir/openssl.log" 20; return 1
    fi
    chmod 755 "$dir" && chmod 644 "$dir"/*.pem "$dir"/*.key
    evrep_log "TLS certificates (CA, server, client) made in $dir"
}
