#!/usr/bin/env bash
# A whole upload built by hand with curl and `host-sim sign`, following only
# ../shared/docs/vod-upload-protocol.md; each request is first sent with one byte
# changed, which must be refused, then as signed, which must be accepted.
# Usage: by_hand.sh HOST_SIM_BINARY ADDR SECRET_ID SECRET_KEY
set -euo pipefail
BIN=$1 ADDR=$2 ID=$3 KEY=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A 600,000-byte file: two parts of 512 KiB (524288) and 75712 bytes.
head -c 600000 /dev/urandom > "$work/clip.mp4"
head -c 524288 "$work/clip.mp4" > "$work/part0"
tail -c +524289 "$work/clip.mp4" > "$work/part1"
SHA=$(sha1sum "$work/clip.mp4" | cut -d' ' -f1)

uri() { jq -rn --arg v "$1" '$v|@uri'; }
# query NAME=VALUE... -> percent-encoded query string
query() {
  local out="" kv
  for kv in "$@"; do out+="${out:+&}$(uri "${kv%%=*}")=$(uri "${kv#*=}")"; done
  printf '%s' "$out"
}
# common ACTION -> the common parameters, with a fresh Nonce
common() { echo "Action=$1 Region=gz Timestamp=$(date +%s) Nonce=$((RANDOM * 32768 + RANDOM + 1)) SecretId=$ID"; }
sign() { local method=$1; shift; "$BIN" sign --method "$method" --host "$ADDR" --path /v2/index.php --key "$KEY" "$@"; }
code() { jq -r .code; }
expect() {
  local want=$1 got=$2 what=$3
  if [ "$got" != "$want" ]; then echo "FAIL: $what: code $got, expected $want" >&2; exit 1; fi
  echo "ok: $what (code $got)"
}

# InitUpload, GET.
read -ra p <<< "$(common InitUpload) fileName=by-hand fileSha=$SHA fileSize=600000 dataSize=524288 fileType=mp4 tags.1=curl"
sig=$(sign GET "${p[@]}")
tampered=("${p[@]/fileSize=600000/fileSize=600001}")
expect -10002 "$(curl -sS "http://$ADDR/v2/index.php?$(query "${tampered[@]}" "Signature=$sig")" | code)" "InitUpload with fileSize changed"
expect 0 "$(curl -sS "http://$ADDR/v2/index.php?$(query "${p[@]}" "Signature=$sig")" | code)" "InitUpload"

# UploadPart, POST, the part as the body.
offset=0
for part in part0 part1; do
  size=$(stat -c %s "$work/$part")
  md5=$(md5sum "$work/$part" | cut -d' ' -f1)
  read -ra p <<< "$(common UploadPart) fileSha=$SHA offset=$offset dataSize=$size dataMd5=$md5"
  sig=$(sign POST "${p[@]}")
  url="http://$ADDR/v2/index.php?$(query "${p[@]}" "Signature=$sig")"
  # One byte of the signature changed.
  bad_sig="${sig:0:5}$( [ "${sig:5:1}" = A ] && echo B || echo A )${sig:6}"
  expect -10002 "$(curl -sS -X POST -H 'Content-Type: application/octet-stream' --data-binary "@$work/$part" \
    "http://$ADDR/v2/index.php?$(query "${p[@]}" "Signature=$bad_sig")" | code)" "UploadPart $part with the signature changed"
  # One byte of the body changed (the signature is fine, the MD5 is not).
  cp "$work/$part" "$work/bad"
  printf '\x00' | cmp -s - <(head -c 1 "$work/bad") && first='\x01' || first='\x00'
  printf "$first" | dd of="$work/bad" bs=1 count=1 conv=notrunc status=none
  expect -10006 "$(curl -sS -X POST -H 'Content-Type: application/octet-stream' --data-binary "@$work/bad" "$url" | code)" \
    "UploadPart $part with one body byte changed"
  # Sign again with a new nonce: a fresh signature is a new attempt (a resend of the
  # same signed request may be answered as a repeat).
  read -ra p <<< "$(common UploadPart) fileSha=$SHA offset=$offset dataSize=$size dataMd5=$md5"
  sig=$(sign POST "${p[@]}")
  expect 0 "$(curl -sS -X POST -H 'Content-Type: application/octet-stream' --data-binary "@$work/$part" \
    "http://$ADDR/v2/index.php?$(query "${p[@]}" "Signature=$sig")" | code)" "UploadPart $part"
  offset=$((offset + size))
done

# FinishUpload, GET.
read -ra p <<< "$(common FinishUpload) fileSha=$SHA"
sig=$(sign GET "${p[@]}")
expect -10002 "$(curl -sS "http://$ADDR/v3/index.php?$(query "${p[@]}" "Signature=$sig")" | code)" "FinishUpload sent to another path"
answer=$(curl -sS "http://$ADDR/v2/index.php?$(query "${p[@]}" "Signature=$sig")")
expect 0 "$(code <<< "$answer")" "FinishUpload"
file_id=$(jq -r .fileId <<< "$answer")
curl -sS -o "$work/stored" "http://$ADDR/sim/files/$file_id"
cmp "$work/clip.mp4" "$work/stored"
echo "ok: fileId $file_id holds the file byte for byte"
