#!/usr/bin/env bash
# The thesis's two payment scenarios (seed 003, section 5.2.1) end to end on the four-org
# testnet, each person using `sphr-node hc` through their own org's node:
#
#   Case I   the patient pays: appointment, prescription, lab report, delegation to the
#            doctor, dosage, payment, unlock, pharmacy delegation and pharmacy bill;
#   Case II  the insurer pays the bills the patient approved.
#
# Dosage, lab reports and amounts are sealed by the client to the patient's PRE key; the
# patient makes re-encryption keys for the doctor, the pharmacy and the insurer; each opens
# what it receives with its own key. A few refusals are shown on the way (each exits non-zero
# with the node's message and changes nothing).
#
#   testnet/demo-thesis.sh     (SPHR_TESTNET_DIR to choose the run dir; KEEP=1 to leave it running)
#
# Exits non-zero as soon as a step does not do what it should.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
run="${SPHR_TESTNET_DIR:-$root/testnet/run}"
work="$(mktemp -d)"
cleanup() {
  rm -rf "$work"
  if [ "${KEEP:-0}" != 1 ]; then "$here/down.sh" || true; fi
}
trap cleanup EXIT

"$here/up.sh" 4
bin="$root/target/release/sphr-node"
net="$run/network"
steps=0
refusals=0

# hc USER SUBCOMMAND [FLAGS...]: run it, print it and its answer; its stdout is in $out.
hc() {
  local user="$1" sub="$2"
  shift 2
  printf '\n$ %s: hc %s' "$user" "$sub"
  if [ $# -gt 0 ]; then printf ' %q' "$@"; fi
  printf '\n'
  if ! out="$("$bin" hc "$sub" --network "$net" --user "$user" "$@" 2>"$work/err")"; then
    sed 's/^/  /' "$work/err" >&2
    echo "FAILED: $user hc $sub" >&2
    exit 1
  fi
  printf '%s\n' "$out" | sed 's/^/  /'
  steps=$((steps + 1))
}

# refused USER SUBCOMMAND [FLAGS...]: must fail; prints the node's message.
refused() {
  local user="$1" sub="$2"
  shift 2
  printf '\n$ %s: hc %s' "$user" "$sub"
  if [ $# -gt 0 ]; then printf ' %q' "$@"; fi
  printf '   (must be refused)\n'
  if out="$("$bin" hc "$sub" --network "$net" --user "$user" "$@" 2>"$work/err")"; then
    printf '%s\n' "$out" | sed 's/^/  /'
    echo "FAILED: $user hc $sub was not refused" >&2
    exit 1
  fi
  sed 's/^/  refused: /' "$work/err"
  refusals=$((refusals + 1))
}

# expect TEXT: the last answer must contain TEXT.
expect() {
  if ! printf '%s\n' "$out" | grep -qF -- "$1"; then
    echo "FAILED: expected \"$1\" in the answer" >&2
    exit 1
  fi
}

# first_id PATTERN: the 64-hex id after PATTERN in the last answer.
first_id() { printf '%s\n' "$out" | sed -n "s/.*$1 \([0-9a-f]\{64\}\).*/\1/p" | head -n 1; }

say() { printf '\n==== %s\n' "$*"; }

P=patient1@PatientOrg
D=doctor1@HospitalOrg
L=lab1@HospitalOrg
I=insurer1@InsuranceOrg
F=pharmacist1@PharmacyOrg
N=nurse1@HospitalOrg
tomorrow=$(($(date -u +%s) / 86400 + 1))

say "Everyone registers with the healthcare contract (role and PRE key from the certificate)"
refused patient2@PatientOrg request-appointment --doctor "$D" --disease cardiology
for u in "$P" "$D" "$L" "$I" "$F" "$N"; do hc "$u" register-user; done

say "CASE I: a patient without insurance"
say "1. The patient asks doctor1 for an appointment; the id is the patient's token"
hc "$P" request-appointment --doctor "$D" --disease endocrinology \
  --notes "tired and thirsty for weeks" --token-out "$work/token1.json"
A1="$(first_id token:)"
expect REQUESTED
refused "$P" accept-appointment --appointment "$A1"

say "2. The doctor sees the day's appointments (notes opened with the doctor's key), accepts, opens an empty prescription"
hc "$D" get-all-appointment --day "$tomorrow"
expect "tired and thirsty"
hc "$D" accept-appointment --appointment "$A1"
expect ACCEPTED
hc "$P" get-appointment-status --appointment "$A1"
expect "ACCEPTED"
refused "$F" generate-prescription --appointment "$A1"
hc "$D" generate-prescription --appointment "$A1"
expect EMPTY

say "3. The lab adds a report sealed to the patient's key, with its bill (amount sealed)"
hc "$L" generate-bill-and-update-prescription-others --token "$work/token1.json" \
  --report "fasting glucose 7.9 mmol/L, HbA1c 7.1 %" --amount 30.00
LAB1="$(first_id bill)"
expect LAB_REPORTS_ADDED

say "4. The doctor asks to read the report; the patient supplies a re-encryption key; the lab bill is paid"
hc "$D" request-prescription-others --appointment "$A1"
refused "$D" get-lab-reports --appointment "$A1"
hc "$P" allow-prescription-others --appointment "$A1" --requester "$D"
expect ALLOWED
hc "$P" pay-bill --bill "$LAB1"
expect PAYMENT_SENT
hc "$L" confirm-bill-payment --bill "$LAB1"
expect PAYMENT_RECEIVED
hc "$D" get-lab-reports --appointment "$A1"
expect "fasting glucose 7.9"

say "5. The doctor writes the dosage (sealed to the patient) and bills: COMPLETE"
hc "$D" generate-bill-and-update-prescription-doctor --appointment "$A1" \
  --dosage "metformin 500 mg twice daily with meals" --amount 50.00
DOC1="$(first_id bill)"
expect COMPLETE

say "Before payment: the prescription is locked for everyone"
refused "$P" get-prescription-patient --appointment "$A1"
hc "$F" request-prescription-others --appointment "$A1"
refused "$F" get-prescription-others --appointment "$A1"
refused "$F" allow-prescription-others --appointment "$A1" --requester "$F"
refused "$D" allow-prescription-others --appointment "$A1" --requester "$F"
hc "$P" allow-prescription-others --appointment "$A1" --requester "$F"
expect ALLOWED
refused "$F" get-prescription-others --appointment "$A1"

say "6. The patient pays the doctor's bill; the doctor confirms and unlocks the prescription"
hc "$P" get-pending-payment-requests --appointment "$A1"
expect "50.00 EUR"
hc "$P" pay-bill --bill "$DOC1"
hc "$D" confirm-bill-payment --bill "$DOC1"
hc "$D" mark-prescription-paid --appointment "$A1"
expect PAID

say "7. The patient fetches the prescription and opens the dosage"
hc "$P" get-prescription-patient --appointment "$A1"
expect "metformin 500 mg"

say "8-9. The pharmacy (allowed, prescription paid) gets the dosage re-encrypted to its key"
hc "$F" get-prescription-others --appointment "$A1"
expect "metformin 500 mg"
say "A nurse with a valid certificate but no delegation gets nothing"
refused "$N" get-prescription-others --appointment "$A1"

say "10-12. The pharmacy bills, the patient pays, the pharmacy confirms and ships"
hc "$F" generate-bill-and-update-prescription-others --token "$work/token1.json" --amount 12.50
PH1="$(first_id bill)"
hc "$P" pay-bill --bill "$PH1"
hc "$F" confirm-bill-payment --bill "$PH1"
hc "$F" get-bill-status --bill "$PH1"
expect PAYMENT_RECEIVED
hc "$P" get-bill-status-patient --appointment "$A1"
expect "12.50 EUR"
hc "$P" get-appointment-status --appointment "$A1"
expect "fetched 1 time"

say "CASE II: a patient with insurance"
say "0. The patient registers a plan; the insurer accepts it"
hc "$P" register-insurance --insurer InsuranceOrg --plan-type FAMILY
PLAN="$(first_id plan)"
expect REQUESTED
hc "$I" get-insurance-registration-requests
hc "$I" accept-insurance-registration-request --plan "$PLAN" --member-id FAM-42
hc "$P" register-insurance-request-status --plan "$PLAN"
expect ACCEPTED

say "1-5. Appointment under the plan, report, dosage, as in Case I"
hc "$P" request-appointment --doctor "$D" --disease haematology --plan "$PLAN" \
  --token-out "$work/token2.json"
A2="$(first_id token:)"
expect "covered by plan"
hc "$D" accept-appointment --appointment "$A2"
hc "$D" generate-prescription --appointment "$A2"
hc "$L" generate-bill-and-update-prescription-others --token "$work/token2.json" \
  --report "ferritin 9 ug/L" --amount 30.00
LAB2="$(first_id bill)"
hc "$D" generate-bill-and-update-prescription-doctor --appointment "$A2" \
  --dosage "ferrous sulfate 325 mg daily" --amount 50.00
DOC2="$(first_id bill)"
refused "$I" pay-insurance-payment-requests --bill "$LAB2"

say "6'. The patient approves both bills, with a re-encryption key to the insurer: payment requests"
hc "$P" approve-payment-request --appointment "$A2"
expect APPROVED

say "7'. The insurer sees the requests and the amounts (re-encrypted to it), pays"
hc "$I" get-insurance-payment-requests
expect unpaid
hc "$I" get-bill-status-insurance --bill "$LAB2" --bill "$DOC2"
expect "50.00 EUR"
hc "$I" pay-insurance-payment-requests
expect PAYMENT_SENT
hc "$L" confirm-bill-payment --bill "$LAB2"
hc "$D" confirm-bill-payment --bill "$DOC2"
hc "$D" mark-prescription-paid --appointment "$A2"
expect PAID
hc "$P" get-prescription-patient --appointment "$A2"
expect "ferrous sulfate"
hc "$F" request-prescription-others --appointment "$A2"
hc "$P" allow-prescription-others --appointment "$A2" --requester "$F"
hc "$F" get-prescription-others --appointment "$A2"
expect "ferrous sulfate"

say "Every node holds the same chain"
out=""
tips=0
for _ in $(seq 1 50); do
  out="$("$here/status.sh")"
  tips="$(printf '%s\n' "$out" | sed -n 's/.* tip=\([0-9a-f]*\) .*/\1/p' | sort -u | wc -l)"
  [ "$tips" = 1 ] && break
  sleep 0.2
done
printf '%s\n' "$out"
if [ "$tips" != 1 ]; then
  echo "FAILED: the nodes disagree on the tip" >&2
  exit 1
fi
say "Case I and Case II done: $steps steps answered, $refusals refusals as expected"
