-- Dedupe keys name the account that spoke (issue 10.2; the format is providers/answers.py
-- `dedupe_key`): `<provider>:<account>:<rest>`. VNPay's vnp_TxnRef is unique per terminal only
-- and unpaid IPNs all carry vnp_TransactionNo=0, so without the account two terminals' IPNs for
-- TxnRef 1001 were one "duplicate". Stored keys are rewritten so that a redelivery of an event
-- heard before this release is still recognised: `<provider>:<rest>` and Stripe's bare event ids
-- (`evt_…`) both become `<provider>:<account>:<rest>`.
update payment_events
   set dedupe_key = provider || ':' || account || ':'
                    || case when starts_with(dedupe_key, provider || ':')
                            then substr(dedupe_key, length(provider) + 2)
                            else dedupe_key end;
