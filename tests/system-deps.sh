#!/bin/sh
# Install the Debian packages the integration tests use as real peers, when
# they are missing and we are root on a Debian-like system. Elsewhere, say what
# is missing: in CI (CI=true) those tests then fail; locally they are skipped.
missing=""
command -v swaks >/dev/null 2>&1 || missing="$missing swaks"
[ -x /usr/sbin/postfix ] || missing="$missing postfix"
[ -x /usr/sbin/dovecot ] || missing="$missing dovecot-imapd"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing test servers:$missing"
  # Postfix asks a question at install; the tests run private instances only.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq || exit 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || exit 1
else
  echo "not installed (need root and apt-get):$missing" >&2
fi
exit 0
