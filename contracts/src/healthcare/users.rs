//! `registerUser` (table 5.2, 25: the thesis's `registerUserFabric`) and `getOrgUsers` (24).

use serde_bytes::ByteBuf;
use sphr_crypto::cert::Role;

use super::{
    GetOrgUsers, Identity, OrgUsers, RegisterUser, UserRecord, bad, check_identity, check_name,
    check_pre_key, emit, event, keys, load, me, page, store,
};
use crate::{ContractError, Ctx};

/// Records the caller: certificate identity, role and PRE key.
pub(super) fn register(ctx: &mut dyn Ctx, req: RegisterUser) -> Result<UserRecord, ContractError> {
    let c = ctx.caller().clone();
    let user = Identity::new(c.org, c.id);
    check_identity("the caller's certificate", &user)?;
    let key = match (c.pre_public_key, req.pre_public_key) {
        (Some(cert), Some(given)) if cert != given.as_slice() => {
            return Err(bad(
                "pre_public_key differs from the certificate's PRE public key",
            ));
        }
        (Some(cert), _) => {
            check_pre_key("the certificate's PRE public key", &cert)?;
            Some(ByteBuf::from(cert))
        }
        (None, Some(given)) => {
            check_pre_key("pre_public_key", &given)?;
            Some(given)
        }
        (None, None) => None,
    };
    let now = ctx.tx_time_ms();
    let k = keys::user(&user);
    let registered_ms = load(ctx, &k, "user")?.map_or(now, |u: UserRecord| u.registered_ms);
    let record = UserRecord {
        user,
        role: c.role,
        pre_public_key: key,
        registered_ms,
        updated_ms: now,
    };
    store(ctx, &k, &record)?;
    let mut e = event();
    e.org = Some(record.user.org.clone());
    emit(ctx, super::EVENT_USER_REGISTERED, e)?;
    Ok(record)
}

/// Lists the registered users of an org. Patients appear only to themselves and to an admin of
/// their own org: a directory of professionals is public to members, a list of patients is not.
pub(super) fn org_users(ctx: &mut dyn Ctx, req: GetOrgUsers) -> Result<OrgUsers, ContractError> {
    check_name("org", &req.org)?;
    if let Some(a) = &req.after {
        check_name("after", a)?;
    }
    let me = me(ctx)?;
    let prefix = keys::user_prefix(&req.org);
    let (rows, more) = page::<UserRecord>(
        ctx,
        &prefix,
        req.after.as_deref().map(str::as_bytes),
        req.limit,
        "user",
    )?;
    let next = if more {
        rows.last().map(|u| u.user.id.clone())
    } else {
        None
    };
    let admin_of_org = me.role == Role::Admin && me.who.org == req.org;
    let users = rows
        .into_iter()
        .filter(|u| u.role != Role::Patient || admin_of_org || me.is(&u.user, Role::Patient))
        .collect();
    Ok(OrgUsers { users, next })
}
