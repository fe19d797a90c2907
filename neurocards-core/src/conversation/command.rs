//! Slash commands, parsed from the message text. Admin commands parse for everyone; the
//! handler answers non-admins exactly as it answers an unknown command.

use crate::domain::{Credits, UserId};

/// Largest grant one `/grant` may give, against typos.
pub const MAX_GRANT: i64 = 100_000;

/// A command from a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/start`, with the referrer when it came through a referral link (`/start ref_<code>`).
    Start {
        referrer: Option<UserId>,
    },
    /// The packs on sale.
    Buy,
    /// Payment support: how to get help with a payment or a refund (Telegram requires it).
    PaySupport,
    Menu,
    Cancel,
    Help,
    Account,
    /// The user's recent orders, with a Cancel button on each that still has waiting videos.
    Orders,
    /// The gallery of delivered videos.
    Videos,
    Language,
    /// An admin command, or the usage text key when its arguments are wrong.
    Admin(Result<AdminCommand, &'static str>),
    /// Any other `/word`.
    Unknown,
}

/// The commands of `ADMIN_IDS` users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    Stats,
    Grant {
        user: UserId,
        amount: Credits,
        note: String,
    },
    Balance {
        user: UserId,
    },
    /// Ban with a reason for admins (may be empty); the user's waiting videos are cancelled
    /// with refund.
    Ban {
        user: UserId,
        reason: String,
    },
    Unban {
        user: UserId,
    },
    Broadcast {
        text: String,
    },
    /// Refund a Telegram Stars payment by its `telegram_payment_charge_id`.
    Refund {
        charge_id: String,
    },
    /// Put one KIE key (by its id, `key-` and 8 hex digits) or every key back into rotation
    /// for the whole fleet.
    UnblockKeys {
        key: Option<String>,
    },
}

/// The commands registered with Telegram (`setMyCommands`) for everyone, with the locale key of
/// each description.
pub const PUBLIC_COMMANDS: [(&str, &str); 10] = [
    ("start", "bot.commands.start"),
    ("menu", "bot.commands.menu"),
    ("account", "bot.commands.account"),
    ("orders", "bot.commands.orders"),
    ("videos", "bot.commands.videos"),
    ("buy", "bot.commands.buy"),
    ("paysupport", "bot.commands.paysupport"),
    ("help", "bot.commands.help"),
    ("language", "bot.commands.language"),
    ("cancel", "bot.commands.cancel"),
];

/// The admin commands, registered for each admin's chat only.
pub const ADMIN_COMMANDS: [(&str, &str); 8] = [
    ("stats", "bot.commands.stats"),
    ("grant", "bot.commands.grant"),
    ("balance", "bot.commands.balance"),
    ("ban", "bot.commands.ban"),
    ("unban", "bot.commands.unban"),
    ("broadcast", "bot.commands.broadcast"),
    ("refund", "bot.commands.refund"),
    ("unblock_keys", "bot.commands.unblock_keys"),
];

impl Command {
    /// Parses `text` when it starts with `/`. `/cmd@OtherBot` addressed to another bot is not
    /// ours (`None`); `bot_username` is our own, when known.
    pub fn parse(text: &str, bot_username: Option<&str>) -> Option<Self> {
        let text = text.trim_start();
        let rest = text.strip_prefix('/')?;
        let (word, args) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
        let (name, mention) = match word.split_once('@') {
            Some((n, m)) => (n, Some(m)),
            None => (word, None),
        };
        if let (Some(m), Some(me)) = (mention, bot_username) {
            if !m.eq_ignore_ascii_case(me) {
                return None;
            }
        }
        Some(match name.to_ascii_lowercase().as_str() {
            "start" => {
                Command::Start { referrer: crate::payments::referral::parse_start_argument(args) }
            }
            "buy" | "topup" => Command::Buy,
            "paysupport" => Command::PaySupport,
            "menu" => Command::Menu,
            "cancel" => Command::Cancel,
            "help" => Command::Help,
            "account" | "balance" if args.is_empty() => Command::Account,
            "orders" => Command::Orders,
            "videos" | "gallery" => Command::Videos,
            "language" | "lang" => Command::Language,
            "stats" => Command::Admin(Ok(AdminCommand::Stats)),
            "grant" => Command::Admin(parse_grant(args)),
            "balance" => Command::Admin(
                one_user(args).map(|user| AdminCommand::Balance { user }).ok_or(USAGE_BALANCE),
            ),
            "ban" => Command::Admin(parse_ban(args).ok_or(USAGE_BAN)),
            "unban" => Command::Admin(
                one_user(args).map(|user| AdminCommand::Unban { user }).ok_or(USAGE_UNBAN),
            ),
            "broadcast" => Command::Admin(if args.is_empty() {
                Err(USAGE_BROADCAST)
            } else {
                Ok(AdminCommand::Broadcast { text: args.to_owned() })
            }),
            "refund" => Command::Admin(parse_charge_id(args).ok_or(USAGE_REFUND)),
            "unblock_keys" => Command::Admin(parse_key_id(args).ok_or(USAGE_UNBLOCK_KEYS)),
            _ => Command::Unknown,
        })
    }

    /// Whether only admins may run this command.
    pub fn is_admin(&self) -> bool {
        matches!(self, Command::Admin(_))
    }
}

const USAGE_GRANT: &str = "bot.admin.usage_grant";
const USAGE_BALANCE: &str = "bot.admin.usage_balance";
const USAGE_BAN: &str = "bot.admin.usage_ban";
const USAGE_UNBAN: &str = "bot.admin.usage_unban";
const USAGE_BROADCAST: &str = "bot.admin.usage_broadcast";
const USAGE_REFUND: &str = "bot.admin.usage_refund";
const USAGE_UNBLOCK_KEYS: &str = "bot.admin.usage_unblock_keys";

/// No argument (every key) or one key id: `key-` and 8 lowercase hex digits.
fn parse_key_id(args: &str) -> Option<AdminCommand> {
    let mut it = args.split_whitespace();
    let Some(id) = it.next() else { return Some(AdminCommand::UnblockKeys { key: None }) };
    let hex = id.strip_prefix("key-")?;
    let ok = hex.len() == 8
        && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && it.next().is_none();
    ok.then(|| AdminCommand::UnblockKeys { key: Some(id.to_owned()) })
}

/// A Telegram charge id: one word of at most 128 printable ASCII characters.
fn parse_charge_id(args: &str) -> Option<AdminCommand> {
    let mut it = args.split_whitespace();
    let id = it.next()?;
    let ok = id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) && it.next().is_none();
    ok.then(|| AdminCommand::Refund { charge_id: id.to_owned() })
}

fn parse_user(s: &str) -> Option<UserId> {
    s.parse::<i64>().ok().filter(|v| *v > 0).map(UserId)
}

fn one_user(args: &str) -> Option<UserId> {
    let mut it = args.split_whitespace();
    let user = parse_user(it.next()?)?;
    it.next().is_none().then_some(user)
}

fn parse_ban(args: &str) -> Option<AdminCommand> {
    let (user, reason) = match args.split_once(char::is_whitespace) {
        Some((user, reason)) => (user, reason.trim()),
        None => (args, ""),
    };
    Some(AdminCommand::Ban { user: parse_user(user)?, reason: reason.to_owned() })
}

fn parse_grant(args: &str) -> Result<AdminCommand, &'static str> {
    let mut it = args.splitn(3, char::is_whitespace);
    let user = it.next().and_then(parse_user).ok_or(USAGE_GRANT)?;
    let amount = it
        .next()
        .and_then(|a| a.trim().parse::<i64>().ok())
        .filter(|a| (1..=MAX_GRANT).contains(a))
        .and_then(|a| Credits::new(a).ok())
        .ok_or(USAGE_GRANT)?;
    let note = it.next().map(str::trim).unwrap_or("").to_owned();
    Ok(AdminCommand::Grant { user, amount, note })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unblock_keys_takes_no_argument_or_one_key_id() {
        let parse = |t: &str| Command::parse(t, None);
        assert_eq!(
            parse("/unblock_keys"),
            Some(Command::Admin(Ok(AdminCommand::UnblockKeys { key: None })))
        );
        assert_eq!(
            parse("/unblock_keys key-0a1b2c3d"),
            Some(Command::Admin(Ok(AdminCommand::UnblockKeys {
                key: Some("key-0a1b2c3d".into())
            })))
        );
        for bad in [
            "/unblock_keys sk-live-123",
            "/unblock_keys key-0A1B2C3D",
            "/unblock_keys key-0a1b2c3d x",
            "/unblock_keys key-123",
        ] {
            assert_eq!(parse(bad), Some(Command::Admin(Err(USAGE_UNBLOCK_KEYS))), "{bad}");
        }
    }

    #[test]
    fn public_commands_parse_with_and_without_mention() {
        let start = Some(Command::Start { referrer: None });
        assert_eq!(Command::parse("/start", None), start);
        assert_eq!(Command::parse("/start@NeuroBot", Some("neurobot")), start);
        assert_eq!(
            Command::parse("/start ref_10", None),
            Some(Command::Start { referrer: Some(UserId(36)) })
        );
        assert_eq!(Command::parse("/start ref_!!", None), start);
        assert_eq!(Command::parse("/buy", None), Some(Command::Buy));
        assert_eq!(Command::parse("/orders", None), Some(Command::Orders));
        assert_eq!(Command::parse("/paysupport", None), Some(Command::PaySupport));
        assert_eq!(Command::parse("/start@other_bot", Some("neurobot")), None);
        assert_eq!(Command::parse("/CANCEL", None), Some(Command::Cancel));
        assert_eq!(Command::parse("/balance", None), Some(Command::Account));
        assert_eq!(Command::parse("/whatever", None), Some(Command::Unknown));
        assert_eq!(Command::parse("hello", None), None);
    }

    #[test]
    fn admin_commands_parse_arguments_or_give_usage() {
        assert_eq!(
            Command::parse("/grant 42 5 for the contest", None),
            Some(Command::Admin(Ok(AdminCommand::Grant {
                user: UserId(42),
                amount: Credits::new(5).expect("non-negative"),
                note: "for the contest".into()
            })))
        );
        assert_eq!(
            Command::parse("/grant 42 5", None),
            Some(Command::Admin(Ok(AdminCommand::Grant {
                user: UserId(42),
                amount: Credits::new(5).expect("non-negative"),
                note: String::new()
            })))
        );
        assert_eq!(Command::parse("/grant 42 0", None), Some(Command::Admin(Err(USAGE_GRANT))));
        assert_eq!(Command::parse("/grant 42 -3", None), Some(Command::Admin(Err(USAGE_GRANT))));
        assert_eq!(Command::parse("/grant bob 3", None), Some(Command::Admin(Err(USAGE_GRANT))));
        assert_eq!(
            Command::parse("/balance 42", None),
            Some(Command::Admin(Ok(AdminCommand::Balance { user: UserId(42) })))
        );
        assert_eq!(Command::parse("/ban", None), Some(Command::Admin(Err(USAGE_BAN))));
        assert_eq!(Command::parse("/ban x spam", None), Some(Command::Admin(Err(USAGE_BAN))));
        assert_eq!(
            Command::parse("/ban 12  spam, chargebacks ", None),
            Some(Command::Admin(Ok(AdminCommand::Ban {
                user: UserId(12),
                reason: "spam, chargebacks".to_owned()
            })))
        );
        assert_eq!(
            Command::parse("/ban 12", None),
            Some(Command::Admin(Ok(AdminCommand::Ban { user: UserId(12), reason: String::new() })))
        );
        assert_eq!(
            Command::parse("/broadcast Hello\nall", None),
            Some(Command::Admin(Ok(AdminCommand::Broadcast { text: "Hello\nall".into() })))
        );
        assert_eq!(Command::parse("/broadcast", None), Some(Command::Admin(Err(USAGE_BROADCAST))));
        assert_eq!(Command::parse("/stats", None), Some(Command::Admin(Ok(AdminCommand::Stats))));
        assert_eq!(
            Command::parse("/refund stxABC-123_x", None),
            Some(Command::Admin(Ok(AdminCommand::Refund { charge_id: "stxABC-123_x".into() })))
        );
        assert_eq!(Command::parse("/refund", None), Some(Command::Admin(Err(USAGE_REFUND))));
        assert_eq!(Command::parse("/refund a b", None), Some(Command::Admin(Err(USAGE_REFUND))));
    }
}
