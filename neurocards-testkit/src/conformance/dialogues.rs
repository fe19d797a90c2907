//! The dialogue storage conformance suite: teloxide's `Storage<State>` and the
//! [`SessionReader`] of one store. Each function states one guarantee and panics when it does
//! not hold. A backend's tests build a fresh [`DialogueFixture`] per test and call them.

use neurocards_core::conversation::{
    DialogueStorage, DialogueStoreError, Draft, SessionReader, State,
};
use neurocards_core::domain::{
    AspectRatio, Credits, GenerationOptions, Language, ProductId, TemplateId, UserId, VideoCount,
    VideoFormat,
};
use std::sync::Arc;
use teloxide::dispatching::dialogue::Storage;
use teloxide::types::ChatId;

/// What the suite needs besides the storage: fresh instances of it (a second replica, or the
/// bot after a restart), and ways to write rows the storage itself never writes.
#[async_trait::async_trait]
pub trait DialogueFixture: Send + Sync {
    type Dialogues: Storage<State, Error = DialogueStoreError>
        + SessionReader
        + Send
        + Sync
        + 'static;

    /// A new storage instance on the fixture's database.
    fn dialogues(&self) -> Arc<Self::Dialogues>;

    /// A new storage instance on the fixture's database, as the conversation's storage type.
    fn erased(&self) -> Arc<DialogueStorage>;

    /// Stores `json` verbatim as the chat's dialogue state.
    async fn store_raw_state(&self, chat: ChatId, json: &str);

    /// Registers user `id` (username `username`, English, no consent yet) holding `balance`
    /// credits, through the ledger as the accounts store would.
    async fn registered_user(&self, id: UserId, username: &str, balance: i64);
}

fn draft() -> Draft {
    Draft {
        product_id: ProductId(11),
        template: TemplateId::parse("ugc").expect("valid template id"),
        wishes: Some("on a <b>kitchen</b> table, «sunny»".to_owned()),
        user_prompt: None,
        format: Some(VideoFormat {
            model: Some("kling-3.0/video".to_owned()),
            options: GenerationOptions { aspect: AspectRatio::Landscape, duration_secs: 5 },
        }),
    }
}

/// A state with nested data, text to escape and an order key.
fn confirming() -> State {
    State::Confirming {
        draft: draft(),
        count: VideoCount::bulk(3).expect("count"),
        key: "k-1".to_owned(),
    }
}

async fn get<S: Storage<State, Error = DialogueStoreError>>(
    s: &Arc<S>,
    chat: ChatId,
) -> Option<State> {
    s.clone().get_dialogue(chat).await.expect("the dialogue reads")
}

/// Nothing is stored for a new chat; a stored state reads back equal, from the same instance
/// and from a new one (another replica, or the bot after a restart), erased or not.
pub async fn state_round_trips<F: DialogueFixture>(f: &F) {
    let chat = ChatId(42);
    let first = f.dialogues();
    assert_eq!(get(&first, chat).await, None);
    first.clone().update_dialogue(chat, confirming()).await.expect("writes");
    assert_eq!(get(&first, chat).await, Some(confirming()));
    assert_eq!(get(&f.dialogues(), chat).await, Some(confirming()));
    let erased = f.erased();
    assert_eq!(erased.get_dialogue(chat).await.expect("reads"), Some(confirming()));
}

/// An update replaces the stored state; a removal forgets it, for every instance. Removing a
/// dialogue that is not stored succeeds (leaving the menu twice is harmless).
pub async fn update_replaces_and_remove_forgets<F: DialogueFixture>(f: &F) {
    let chat = ChatId(7);
    let store = f.dialogues();
    store.clone().update_dialogue(chat, State::AwaitingPhoto).await.expect("writes");
    let next = State::ChoosingTemplate { product_id: ProductId(9) };
    store.clone().update_dialogue(chat, next.clone()).await.expect("overwrites");
    store.clone().update_dialogue(chat, next.clone()).await.expect("writes the same again");
    assert_eq!(get(&f.dialogues(), chat).await, Some(next));

    let erased = f.erased();
    erased.clone().remove_dialogue(chat).await.expect("removes");
    assert_eq!(get(&store, chat).await, None);
    erased.remove_dialogue(chat).await.expect("removing an absent dialogue succeeds");
    store.clone().update_dialogue(chat, State::Idle).await.expect("writes after a removal");
    assert_eq!(get(&store, chat).await, Some(State::Idle));
}

/// Chats do not share state: writing or removing one leaves the others as they were.
pub async fn chats_are_independent<F: DialogueFixture>(f: &F) {
    let store = f.dialogues();
    let (a, b) = (ChatId(1), ChatId(-100_200_300));
    store.clone().update_dialogue(a, State::AwaitingConsent).await.expect("writes a");
    assert_eq!(get(&store, b).await, None);
    store.clone().update_dialogue(b, confirming()).await.expect("writes b");
    store.clone().remove_dialogue(a).await.expect("removes a");
    assert_eq!(get(&store, a).await, None);
    assert_eq!(get(&store, b).await, Some(confirming()));
}

/// A stored state that no longer parses (written by an incompatible version) reads as absent,
/// through the storage and the session reader alike, and the next update replaces it.
pub async fn unreadable_state_reads_as_absent<F: DialogueFixture>(f: &F) {
    let chat = ChatId(5);
    f.store_raw_state(chat, "{\"step\":\"gone\"}").await;
    let store = f.dialogues();
    assert_eq!(get(&store, chat).await, None);
    assert_eq!(store.read(chat, UserId(5)).await.expect("reads"), (None, None));
    store.clone().update_dialogue(chat, State::Idle).await.expect("replaces the unreadable");
    assert_eq!(get(&store, chat).await, Some(State::Idle));
}

/// The session reader returns the chat's state and the user's account together: neither before
/// anything is stored, the account once registered, the state once written — and only this
/// chat's state.
pub async fn session_reader_returns_state_and_account<F: DialogueFixture>(f: &F) {
    let store = f.dialogues();
    let (chat, user) = (ChatId(77), UserId(77));
    assert_eq!(store.read(chat, user).await.expect("reads"), (None, None));

    f.registered_user(user, "ann", 4).await;
    let (state, account) = store.read(chat, user).await.expect("reads");
    assert_eq!(state, None);
    let account = account.expect("the registered account");
    assert_eq!(account.id, user);
    assert_eq!(account.username.as_deref(), Some("ann"));
    assert_eq!(account.language, Language::En);
    assert_eq!(account.balance, Credits::new(4).expect("credits"));
    assert!(!account.banned);
    assert_eq!(account.consent_at, None);
    assert_eq!(account.blocked_bot_at, None);
    let age = chrono::Utc::now() - account.created_at;
    assert!(age < chrono::Duration::minutes(5), "created just now, not {age}");

    store.clone().update_dialogue(chat, confirming()).await.expect("writes");
    let (state, account) = store.read(chat, user).await.expect("reads");
    assert_eq!(state, Some(confirming()));
    assert_eq!(account.map(|a| a.id), Some(user));
    // Another chat's state is not this chat's; another user's account is not this user's.
    assert_eq!(store.read(ChatId(78), user).await.expect("reads").0, None);
    assert_eq!(store.read(chat, UserId(78)).await.expect("reads").1, None);
}
